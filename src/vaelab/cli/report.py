"""vaelab report: one self-contained HTML page about a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaelab.cli.common import add_run_argument

NAME = "report"
HELP = "one HTML page (images embedded): config, curves, metrics, samples, maps; makes what's missing"
EXAMPLE = "vaelab report runs/digits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("--out", type=Path, default=None, help="the HTML file (default RUN/report.html)")
    p.add_argument("--samples", "-k", type=int, default=100,
                   help="importance samples for log p(x) if the run has no evaluation yet (100)")


def execute(args: argparse.Namespace) -> int:
    from vaelab.errors import VaelabError
    from vaelab.workflows import write_report

    if args.out is not None and args.out.suffix.lower() not in (".html", ".htm"):
        raise VaelabError(f"--out {args.out}: expected an .html file name")
    if args.samples < 0:
        raise VaelabError("--samples must be >= 0")
    path = write_report(args.run, args.out, k=args.samples, device=args.device)
    print(f"wrote {path}")
    return 0
