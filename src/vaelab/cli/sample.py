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
                   help="how many samples (default 64; with --label all, per class, default 10)")
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
    import numpy as np
    import torch

    from vaelab.cli.common import save_array
    from vaelab.exploration import sample
    from vaelab.plots import as_images, image_grid, save_figure
    from vaelab.runfolder import load
    from vaelab.training import condition

    model = load(args.run, device=args.device)
    labels = parse_label(args.label, model.cond_dim)
    path = output_path(args, "samples.png")
    device = next(model.parameters()).device
    if labels is None or len(labels) == 1:
        n = args.n or 64
        y = None if labels is None else torch.full((n,), labels[0], device=device)
        gen = torch.Generator(device=device).manual_seed(args.seed)
        images = sample(model, n, condition(y, model.cond_dim), generator=gen)
        title = f"{n} samples from {args.run.name}" + ("" if labels is None else
                                                       f", class {labels[0]}")
        figure = image_grid(as_images(images, model.x_shape), title)
    else:
        n = args.n or 10
        rows = []
        for label in labels:  # the same seed for every row: a column keeps its z, the class varies
            gen = torch.Generator(device=device).manual_seed(args.seed)
            y = condition(torch.full((n,), label, device=device), model.cond_dim)
            rows.append(sample(model, n, y, generator=gen))
        images = np.concatenate(rows)
        figure = image_grid(as_images(images, model.x_shape),
                            f"samples from {args.run.name}: one row per class, one z per column",
                            ncol=n, row_labels=[str(c) for c in labels])
    save_figure(figure, path)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, images)}")
    return 0
