"""vaelab traverse: move one latent dimension at a time and decode."""

from __future__ import annotations

import argparse

import numpy as np

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int
from vaelab.errors import VaelabError

NAME = "traverse"
HELP = "latent traversals: vary one dimension at a time (chosen, or the top ones by KL)"
EXAMPLE = "vaelab traverse runs/digits --dims top --range 3 --steps 9"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("--dims", default="top",
                   help="dimensions, e.g. 0,1,2; or top (the 8 with the largest KL) or top:K")
    p.add_argument("--range", type=float, default=3.0, help="offsets from -R to +R (default 3)")
    p.add_argument("--steps", type=positive_int, default=9, help="offsets per row (default 9)")
    p.add_argument("--index", type=int, default=None,
                   help="start from this test image's code (default: the prior mean, z = 0; "
                   "test image 0 for a conditional model)")
    add_output_arguments(p, "traverse.png")


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import load_run, save_array
    from vaelab.exploration import kl_per_dimension
    from vaelab.workflows import figures

    path = output_path(args, "traverse.png")
    model, data, step = load_run(args)
    dims = _dims(args.dims, kl_per_dimension(model, data.test))
    fig, images = figures.traversals(model, data.test, dims, radius=args.range, steps=args.steps,
                                     index=args.index, name=args.run.name)
    figures.save(fig, path, step)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, images)}")
    return 0


def _dims(text: str, kl: np.ndarray) -> list[int]:
    from vaelab.exploration import top_dims

    if text == "top" or text.startswith("top:"):
        count = text.partition(":")[2] or "8"
        if not count.isdigit() or int(count) < 1:
            raise VaelabError(f"--dims {text}: expected top or top:K with K >= 1")
        return top_dims(kl, min(int(count), len(kl)))
    try:
        dims = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise VaelabError(f"--dims {text}: expected comma-separated integers, top or top:K") from None
    bad = [d for d in dims if not 0 <= d < len(kl)]
    if bad or not dims:
        raise VaelabError(f"--dims {text}: the latent has dimensions 0..{len(kl) - 1}")
    return dims
