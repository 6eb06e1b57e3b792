"""vaelab sample: draw images from the prior and decode them."""

from __future__ import annotations

import argparse

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int

NAME = "sample"
HELP = "draw z ~ p(z) and decode: a PNG grid (and a .npy with --save-array)"
EXAMPLE = "vaelab sample runs/digits -n 64 --save-array"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=64, help="how many samples (default 64)")
    add_output_arguments(p, "samples.png")


def execute(args: argparse.Namespace) -> int:
    import torch

    from vaelab.cli.common import save_array
    from vaelab.exploration import sample
    from vaelab.plots import _as_images, image_grid, save_figure
    from vaelab.runfolder import load

    model = load(args.run, device=args.device)
    path = output_path(args, "samples.png")
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(args.seed)
    images = sample(model, args.n, generator=gen)
    save_figure(image_grid(_as_images(images, model.x_shape),
                           f"{args.n} samples from {args.run.name}"), path)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, images)}")
    return 0
