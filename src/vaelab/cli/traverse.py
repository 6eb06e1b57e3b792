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
                   help="start from this test image's code (default: the prior mean, z = 0)")
    add_output_arguments(p, "traverse.png")


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import save_array
    from vaelab.data import load_data
    from vaelab.exploration import encode, kl_per_dimension, select_inputs, traverse
    from vaelab.plots import as_image_rows, row_grid, save_figure
    from vaelab.runfolder import load, read_config

    path = output_path(args, "traverse.png")
    model = load(args.run, device=args.device)
    test = load_data(read_config(args.run).data).test
    kl = kl_per_dimension(model, test)
    dims = _dims(args.dims, kl)
    z0, y, start = None, None, "the prior mean z = 0"
    if args.index is not None:
        x, y = select_inputs([str(args.index)], test, model.x_shape, "--index")
        z0, start = encode(model, x, y)[0], f"test image {args.index}"
    elif model.cond_dim:
        raise VaelabError("this is a conditional VAE: pass --index to start from a test image")
    values = np.linspace(-args.range, args.range, args.steps).tolist()
    images = traverse(model, dims, values, z0, y)  # (K, V, *x_shape)
    fig = row_grid(as_image_rows(images, model.x_shape),
                   f"latent traversals around {start} ({args.run.name})",
                   row_labels=[f"z[{d}] (KL {kl[d]:.2f})" for d in dims],
                   col_labels=[f"{v:+.1f}" for v in values],
                   xlabel="offset added to one dimension (others fixed)")
    save_figure(fig, path)
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
