"""vaelab sample: draw images from the prior and decode them (for a chosen class, if conditional)."""

from __future__ import annotations

import argparse

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int
from vaelab.errors import VaelabError

NAME = "sample"
HELP = "draw z ~ p(z) and decode: a PNG grid (and a .npy with --save-array)"
EXAMPLE = "vaelab sample runs/digits -n 64 --save-array   |   vaelab sample runs/cvae --label all"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=None,
                   help="how many samples (default 64; with --label all, per class, default 10); "
                   "the PNG shows at most 400, --save-array keeps them all")
    p.add_argument("--label", help="conditional runs: a class number to draw, or 'all' for one "
                   "row per class (the default for conditional runs); the rows share their z")
    add_output_arguments(p, "samples.png")


def parse_label(text: str | None, num_classes: int) -> list[int] | None:
    """--label -> the class numbers to draw, one grid row each (None: unconditional)."""
    if not num_classes:
        if text is not None:
            raise VaelabError("--label: this run is not conditional (train with --conditional)")
        return None
    if text is None or text == "all":
        return list(range(num_classes))
    try:
        label = int(text)
    except ValueError:
        raise VaelabError(f"--label must be a class number or 'all', not '{text}'") from None
    if not 0 <= label < num_classes:
        raise VaelabError(f"--label {label}: this run has classes 0 to {num_classes - 1}")
    return [label]


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import load_model, load_run, save_array
    from vaelab.runfolder import read_config
    from vaelab.workflows import figures

    if read_config(args.run).data.features:  # M1+M2: images, through M1
        model, _, step = load_run(args)
    else:
        model, step = load_model(args)
    labels = parse_label(args.label, model.cond_dim)
    path = output_path(args, "samples.png")
    n = args.n or (10 if labels is not None and len(labels) > 1 else 64)
    fig, images, note = figures.samples(model, n, seed=args.seed, labels=labels,
                                        name=args.run.name)
    figures.save(fig, path, step)
    print(f"wrote {path}" + (f" ({note}; --save-array writes them all)" if note else ""))
    if args.save_array:
        print(f"wrote {save_array(path, images)}")
    return 0
