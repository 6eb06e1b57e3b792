"""The `vaelab` command: one subcommand per module in this package, each calling one library
function. `main(argv)` returns an exit code so tests call it in-process.

Exit codes: 0 success; 2 bad input or environment (one line on stderr: `vaelab CMD: error: ...`);
130/143 stopped by SIGINT/SIGTERM (training saves a checkpoint first); 1 an unexpected error,
reported as one line plus a hint; `vaelab --debug CMD ...` (or VAELAB_DEBUG=1) shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO

from vaelab.errors import TrainingInterrupted, VaelabError
from vaelab.training import flush_denormals

# each module has NAME, HELP, EXAMPLE, add_arguments(parser) and execute(args) -> int
COMMAND_MODULES = ["train", "datasets", "evaluate", "sample", "reconstruct",
                   "interpolate", "arithmetic", "traverse", "latent", "inpaint", "denoise",
                   "analogies", "compare_latent", "report", "baseline"]


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="vaelab", description="Train, evaluate and explore variational autoencoders.",
        epilog="example: vaelab train --data digits && vaelab evaluate runs/digits",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"vaelab.cli.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                           epilog=f"example:\n  {module.EXAMPLE}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an unexpected error")
        p.set_defaults(execute=module.execute)
    return parser


def _version() -> str:
    from vaelab import __version__

    return f"vaelab {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one command; returns its exit code (0 success, 2 bad input: see above)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on --help and usage errors
        return int(e.code or 0)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get("VAELAB_DEBUG", "") not in ("", "0")
    try:
        with flush_denormals(), warnings.catch_warnings():  # before any torch work, so
            warnings.showwarning = _one_line_warnings(args.command)  # torch's threads get it
            return args.execute(args)
    except TrainingInterrupted as e:
        print(f"vaelab {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"vaelab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        code, message = describe_error(e)
        print(f"vaelab {args.command}: {message}", file=sys.stderr)
        return code


def _one_line_warnings(command: str) -> Callable[..., None]:
    """Shows a warning as `vaelab CMD: warning: message`, with no source line."""
    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        text = str(message).strip().splitlines()
        print(f"vaelab {command}: warning: {' '.join(t.strip() for t in text)}",
              file=file or sys.stderr)
    return show


def describe_error(e: Exception) -> tuple[int, str]:
    """The exit code and the message for an exception that ended a command.

    A VaelabError is the user's to fix (2). So are I/O failures and running out of memory, which
    come from the environment, not from vaelab. Anything else is a bug: one line naming it and
    how to see the traceback, never a page of torch internals (1)."""
    import torch

    if isinstance(e, VaelabError):
        return 2, f"error: {e}"
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        return 2, f"error: {e.strerror or e}{where}"
    if isinstance(e, MemoryError | torch.OutOfMemoryError):
        return 2, "error: out of memory; try a smaller --batch-size or a smaller model"
    first = (str(e).strip().splitlines() or [""])[0][:200]
    return 1, (f"unexpected error: {type(e).__name__}: {first} (this is a bug in vaelab or an "
               f"input it does not check; rerun as `vaelab --debug ...` for the traceback)")


def run() -> None:
    sys.exit(main())
