"""vaelab inpaint: fill hidden pixels by encoding and decoding with the observed ones clamped."""

from __future__ import annotations

import argparse

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int

NAME = "inpaint"
HELP = "fill masked pixels (left|right|top|bottom|center|random:P) by iterated encode/decode"
EXAMPLE = "vaelab inpaint runs/digits --mask right -n 8"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from vaelab.exploration import INPAINT_STEPS

    add_run_argument(p)
    p.add_argument("--mask", default="center",
                   help="the hidden part: left, right, top, bottom, center or random:P (default "
                        "center)")
    p.add_argument("--iterations", type=positive_int, default=INPAINT_STEPS,
                   help=f"encode/decode rounds with observed pixels clamped ({INPAINT_STEPS})")
    p.add_argument("--images", nargs="+", metavar="IMAGE",
                   help="test indices or image files to show (default: the first N)")
    p.add_argument("-n", type=positive_int, default=8, help="images to show (default 8)")
    p.add_argument("--limit", type=positive_int, default=1000,
                   help="test images the error is averaged over (default 1000)")
    add_output_arguments(p, "inpaint.png")


def execute(args: argparse.Namespace) -> int:
    import torch

    from vaelab.cli.common import load_run, save_array
    from vaelab.exploration import inpaint, make_mask, restoration_errors, select_inputs
    from vaelab.plots import as_images, restoration_figure
    from vaelab.workflows.figures import save

    path = output_path(args, "inpaint.png")
    model, data, step = load_run(args)
    gen = torch.Generator().manual_seed(args.seed)
    mean_image = data.train.x.mean(0)  # the baseline guess, and the first guess for hidden values
    test = data.test.subset(slice(0, args.limit))
    observed = make_mask(args.mask, model.x_shape, len(test), gen)
    restored = inpaint(model, test.x, observed, args.iterations, mean_image,
                       test.y if model.cond_dim else None)
    err = restoration_errors(restored, test.x.numpy(), ~observed.numpy(), mean_image.numpy())
    if args.images:
        x, y = select_inputs(args.images, data.test, model.x_shape, "--images")
        shown_mask = make_mask(args.mask, model.x_shape, len(x), gen)
        shown = inpaint(model, x, shown_mask, args.iterations, mean_image, y)
    else:
        x, shown_mask, shown = test.x[: args.n], observed[: args.n], restored[: args.n]
    hidden = as_images(~shown_mask.numpy(), model.x_shape)
    masked = as_images(torch.where(shown_mask, x, 0).numpy(), model.x_shape)
    fig = restoration_figure(
        masked, as_images(shown, model.x_shape), as_images(x.numpy(), model.x_shape),
        f"inpainting, mask {args.mask}, {args.iterations} rounds: hidden-pixel MSE "
        f"{err['mse']:.4f} vs {err['baseline_mse']:.4f} for the mean image", hidden=hidden)
    save(fig, path, step)
    print(f"hidden-pixel MSE over {len(test)} test images: {err['mse']:.4f} "
          f"(mean-image baseline {err['baseline_mse']:.4f})")
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, shown)}")
    return 0
