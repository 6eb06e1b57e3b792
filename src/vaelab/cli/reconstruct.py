"""vaelab reconstruct: test images over their reconstructions."""

from __future__ import annotations

import argparse

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int

NAME = "reconstruct"
HELP = "encode test images and decode them: originals over reconstructions, PNG"
EXAMPLE = "vaelab reconstruct runs/digits -n 16"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=32, help="how many test images (default 32)")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    add_output_arguments(p, "reconstructions.png")


def execute(args: argparse.Namespace) -> int:
    import numpy as np

    from vaelab.cli.common import save_array
    from vaelab.data import load_data
    from vaelab.errors import VaelabError
    from vaelab.exploration import reconstruct
    from vaelab.plots import as_images, reconstruction_grid, save_figure
    from vaelab.runfolder import load, read_config

    config = read_config(args.run)
    model = load(args.run, device=args.device)
    split = getattr(load_data(config.data), args.split)
    if split is None:
        raise VaelabError(f"--split {args.split}: this run has no {args.split} split")
    part = split.subset(slice(0, args.n))
    originals, recons = reconstruct(model, part.x, part.y)
    path = output_path(args, "reconstructions.png")
    save_figure(reconstruction_grid(as_images(originals, model.x_shape),
                                    as_images(recons, model.x_shape)), path)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, np.stack([originals, recons]))}")
    return 0
