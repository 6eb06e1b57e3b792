"""vaelab baseline: the test error of a classifier fitted on N labels alone, on the inputs or on
the codes of a trained VAE (the baselines of Kingma et al. 2014 for M2 and M1+M2)."""

from __future__ import annotations

import argparse
import json

from vaelab.cli.common import int_list, positive_int

NAME = "baseline"
HELP = ("test error of a classifier on N labels alone: an MLP like M2's q(y|x) on the inputs, "
        "or logistic regression / an SVM on the codes of a VAE run (M1)")
EXAMPLE = ("vaelab baseline --data mnist --labels 100   |   "
           "vaelab baseline --labels 100 --codes runs/m1 --method svm --json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vaelab.workflows.baselines import METHODS

    p.add_argument("--data", help="dataset name or file (default: the --codes run's dataset, "
                   "else digits)")
    p.add_argument("--data-dir", help="folder holding dataset files")
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="share of train held out, as `vaelab train` does (default 0.1), so the "
                   "labelled examples are M2's; ignored with --codes (the run's own splits)")
    p.add_argument("--labels", type=positive_int, required=True, metavar="N",
                   help="labelled training examples, balanced over classes, drawn with --seed as "
                   "`vaelab train --family m2 --labels N` draws them")
    p.add_argument("--codes", metavar="RUN", help="fit on the posterior means of the VAE "
                   "trained in RUN (M1) instead of the inputs")
    p.add_argument("--method", choices=list(METHODS),
                   help="logreg | svm | mlp (default: logreg with --codes, else mlp)")
    p.add_argument("--seed", type=int, default=0, help="the label draw (and the MLP's init)")
    p.add_argument("--hidden", type=int_list, help="mlp: hidden sizes (default: the dataset's "
                   "model default, as M2's classifier)")
    p.add_argument("--steps", type=positive_int, default=1000, help="mlp: Adam steps (1000)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def execute(args: argparse.Namespace) -> int:
    from vaelab.config import DataConfig
    from vaelab.data import Data, load_data
    from vaelab.errors import VaelabError
    from vaelab.workflows.baselines import Options, baseline, codes

    if not 0 <= args.valid_fraction < 1:
        raise VaelabError(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    data: Data
    if args.codes:
        data = codes(args.codes, args.data)
    else:
        data = load_data(DataConfig(name=args.data or "digits", data_dir=args.data_dir,
                                    valid_fraction=args.valid_fraction))
    method = args.method or ("logreg" if args.codes else "mlp")
    result = baseline(data, args.labels, method=method,
                      options=Options(seed=args.seed, hidden=args.hidden, steps=args.steps))
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.line())
    return 0
