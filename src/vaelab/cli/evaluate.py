"""vaelab evaluate: test ELBO, an importance-sampled log p(x) (or what the run's likelihood gives
on its data: a cross-entropy, a dequantised log-density), KL per dimension, active units."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from vaelab.cli.common import add_run_argument

if TYPE_CHECKING:
    from vaelab.config import Config
    from vaelab.data import Data

NAME = "evaluate"
HELP = ("evaluate a trained run: ELBO, importance-sampled log p(x) with bits/dim (or what the "
        "likelihood gives on the data), KL, active units")
EXAMPLE = "vaelab evaluate runs/digits --samples 1000 --json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument("--samples", "-k", type=int, default=None,
                   help="importance samples per example (default 500; 0 skips log p(x))")
    p.add_argument("--protocol", choices=["quick", "paper"], default="quick",
                   help="paper: k=5000 on the whole test set (IWAE protocol)")
    p.add_argument("--limit", type=int, default=None, help="only the first N examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def execute(args: argparse.Namespace) -> int:
    from vaelab.data import load_data
    from vaelab.errors import VaelabError
    from vaelab.evaluation import evaluate, format_table
    from vaelab.runfolder import load, read_config, write_json

    config = read_config(args.run)
    model = load(args.run, device=args.device)
    data = load_data(config.data)
    split = getattr(data, args.split)
    if split is None:
        raise VaelabError(f"--split {args.split}: this run has no {args.split} split")
    if args.limit is not None:
        if args.limit < 1:
            raise VaelabError("--limit must be >= 1")
        split = split.subset(slice(0, args.limit))
    k = args.samples if args.samples is not None else (5000 if args.protocol == "paper" else 500)
    if k < 0:
        raise VaelabError("--samples must be >= 0")
    value_range, levels = scored_values(config, data, args.split)
    objective = config.objective
    result = evaluate(model, split, k=k, seed=args.seed, cond_dim=config.model.cond_dim,
                      objective=objective.name, value_range=value_range, levels=levels,
                      iwae_k=objective.num_samples if objective.name == "iwae" else 0,
                      progress=not args.json)
    result |= {"split": args.split, "dataset": data.name, "protocol": args.protocol}
    write_json(args.run / f"evaluation-{args.split}.json", result)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def scored_values(config: Config, data: Data, split: str) -> tuple[str, int | None]:
    """The value range and quantisation levels of the split that is scored.

    --binarize threshold makes every split binary; dynamic binarizes valid and test once (the
    train split stays grey and is binarized afresh each batch while training).
    """
    binarize = config.data.binarize
    if binarize == "threshold" or (binarize == "dynamic" and split != "train"):
        return "binary", 2
    return data.value_range, getattr(data, "levels", None)
