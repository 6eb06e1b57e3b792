"""vaelab interpolate: decode the path between the codes of two images."""

from __future__ import annotations

import argparse

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int

NAME = "interpolate"
HELP = "walk the latent path between two images (test indices or files) and decode it"
EXAMPLE = "vaelab interpolate runs/digits --from 0 1 --to 5 7 --steps 10 --method slerp"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("--from", dest="start", nargs="+", default=["0"], metavar="A",
                   help="start images: test-set indices or image files (default: 0)")
    p.add_argument("--to", dest="end", nargs="+", default=["1"], metavar="B",
                   help="end images, one per start (default: 1)")
    p.add_argument("--steps", type=positive_int, default=10,
                   help="points per path, endpoints included (default 10)")
    p.add_argument("--method", choices=["linear", "slerp"], default="linear",
                   help="linear, or slerp: White's (2016) spherical interpolation")
    add_output_arguments(p, "interpolate.png")


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import load_run, save_array
    from vaelab.workflows import figures

    path = output_path(args, "interpolate.png")
    model, data, step = load_run(args)
    fig, paths = figures.interpolations(model, data.test, args.start, args.end, steps=args.steps,
                                        method=args.method, classes=data.classes,
                                        name=args.run.name)
    figures.save(fig, path, step)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, paths)}")
    return 0
