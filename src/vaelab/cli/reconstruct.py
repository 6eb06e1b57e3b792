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
    from vaelab.cli.common import get_split, load_run, save_array
    from vaelab.workflows import figures

    model, data, step = load_run(args)
    split = get_split(data, args.split)
    path = output_path(args, "reconstructions.png")
    fig, arrays = figures.reconstructions(model, split, args.n)
    figures.save(fig, path, step)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, arrays)}")
    return 0
