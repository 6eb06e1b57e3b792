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
                   help="linear, or slerp: the spherical path, norms between the endpoints'")
    add_output_arguments(p, "interpolate.png")


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import save_array
    from vaelab.data import load_data
    from vaelab.errors import VaelabError
    from vaelab.exploration import interpolate, select_inputs
    from vaelab.plots import as_image_rows, row_grid, save_figure
    from vaelab.runfolder import load, read_config

    if len(args.start) != len(args.end):
        raise VaelabError(f"--from names {len(args.start)} images and --to {len(args.end)}; "
                          f"give one end per start")
    path = output_path(args, "interpolate.png")
    model = load(args.run, device=args.device)
    test = load_data(read_config(args.run).data).test
    xa, ya = select_inputs(args.start, test, model.x_shape, "--from")
    xb, _ = select_inputs(args.end, test, model.x_shape, "--to")
    paths = interpolate(model, xa, xb, args.steps, args.method, ya)  # (P, T, *x_shape)
    images = as_image_rows(paths, model.x_shape)
    rows = [f"{a} -> {b}" for a, b in zip(args.start, args.end, strict=True)]
    cols = [f"{t:.2f}" for t in [i / (args.steps - 1) for i in range(args.steps)]]
    fig = row_grid(images, f"{args.method} interpolation in latent space ({args.run.name})",
                   row_labels=[_short(r) for r in rows], col_labels=cols,
                   xlabel="t (0: reconstruction of A, 1: reconstruction of B)")
    save_figure(fig, path)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, paths)}")
    return 0


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]
