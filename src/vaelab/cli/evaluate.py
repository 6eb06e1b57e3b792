"""vaelab evaluate: test ELBO, an importance-sampled log p(x) (or what the run's likelihood gives
on its data: a cross-entropy, a dequantised log-density), KL per dimension, active units; for
an M2 run also its classifier's test error, and RUN/confusion.png."""

from __future__ import annotations

import argparse
import json
import sys

from vaelab.cli.common import add_run_argument

NAME = "evaluate"
HELP = ("evaluate a trained run: ELBO, importance-sampled log p(x) with bits/dim (or what the "
        "likelihood gives on the data), KL, active units; M2 runs: the classifier's test "
        "error and RUN/confusion.png")
EXAMPLE = "vaelab evaluate runs/digits --samples 1000 --json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument("--samples", "-k", type=int, default=None,
                   help="importance samples per example (default 500; 0 skips log p(x)); "
                   "an M2 takes them for each class, to sum y out exactly")
    p.add_argument("--protocol", choices=["quick", "paper"], default="quick",
                   help="paper: k=5000 on the whole test set (IWAE protocol)")
    p.add_argument("--limit", type=int, default=None, help="only the first N examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import load_model
    from vaelab.data import load_data
    from vaelab.errors import VaelabError
    from vaelab.evaluation import evaluate_run, format_table
    from vaelab.runfolder import read_config, write_json

    config = read_config(args.run)
    model, step = load_model(args)  # says so when the run is unfinished
    data = load_data(config.data)
    if args.limit is not None and args.limit < 1:
        raise VaelabError("--limit must be >= 1")
    k = args.samples if args.samples is not None else (5000 if args.protocol == "paper" else 500)
    if k < 0:
        raise VaelabError("--samples must be >= 0")
    result = evaluate_run(model, config, data, args.split, k=k, seed=args.seed, limit=args.limit,
                          progress=not args.json)
    result |= {"protocol": args.protocol, "model_step": step}
    write_json(args.run / f"evaluation-{args.split}.json", result)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    if "confusion" in result:  # M2: its classifier's confusion matrix
        from vaelab.workflows import figures

        name = "confusion.png" if args.split == "test" else f"confusion-{args.split}.png"
        fig = figures.confusion(result["confusion"], data.classes, split=args.split,
                                name=args.run.name)
        path = figures.save(fig, args.run / name, step)
        print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0
