"""The `vaelab` command: one subcommand per module in this package, each calling one library
function. `main(argv)` returns an exit code so tests call it in-process."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vaelab.errors import VaelabError

# each module has NAME, HELP, EXAMPLE, add_arguments(parser) and execute(args) -> int
COMMAND_MODULES = ["train", "evaluate", "sample", "reconstruct"]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="vaelab", description="Train, evaluate and explore variational autoencoders.",
        epilog="example: vaelab train --data digits && vaelab evaluate runs/digits",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"vaelab.cli.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           epilog=f"example:\n  {module.EXAMPLE}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(execute=module.execute)
    return parser


def _version() -> str:
    from vaelab import __version__

    return f"vaelab {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns 0 on success, 2 on bad input (one line on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and usage errors
        return int(e.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.execute(args)
    except VaelabError as e:
        print(f"vaelab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vaelab {args.command}: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    sys.exit(main())
