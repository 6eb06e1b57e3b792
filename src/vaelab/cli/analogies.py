"""vaelab analogies: a test image's style decoded as every class (Kingma et al. 2014, fig. 1)."""

from __future__ import annotations

import argparse

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int

NAME = "analogies"
HELP = ("class analogies of an M2 (or conditional) run: each row a test image, then its style "
        "z = E_q[z|x,y] decoded as every class y")
EXAMPLE = "vaelab analogies runs/m2 -n 8 --seed 1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("-n", type=positive_int, default=10,
                   help="rows: test images, drawn at random with --seed (default 10)")
    add_output_arguments(p, "analogies.png")


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import load_run, save_array
    from vaelab.workflows import figures

    path = output_path(args, "analogies.png")
    model, data, step = load_run(args)
    fig, images = figures.analogies(model, data.test, args.n, seed=args.seed,
                                    classes=data.classes, name=args.run.name)
    figures.save(fig, path, step)
    print(f"wrote {path}")
    if args.save_array:  # (n, 1 + K, *x_shape): the test images, then the K classes
        print(f"wrote {save_array(path, images)}")
    return 0
