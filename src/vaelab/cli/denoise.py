"""vaelab denoise: reconstruct noisy inputs from their codes."""

from __future__ import annotations

import argparse

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int

NAME = "denoise"
HELP = "add noise (gaussian:S or saltpepper:P) to test images and reconstruct them"
EXAMPLE = "vaelab denoise runs/digits --noise saltpepper:0.2"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("--noise", default="gaussian:0.3",
                   help="gaussian:S (std. dev. S) or saltpepper:P (fraction P) (gaussian:0.3)")
    p.add_argument("--images", nargs="+", metavar="IMAGE",
                   help="test indices or image files to show (default: the first N)")
    p.add_argument("-n", type=positive_int, default=8, help="images to show (default 8)")
    p.add_argument("--limit", type=positive_int, default=1000,
                   help="test images the error is averaged over (default 1000)")
    add_output_arguments(p, "denoise.png")


def execute(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vaelab.cli.common import load_run, save_array
    from vaelab.exploration import corrupt, denoise, restoration_errors, select_inputs
    from vaelab.plots import as_images, restoration_figure
    from vaelab.workflows.figures import save

    path = output_path(args, "denoise.png")
    model, data, step = load_run(args)
    clip = data.value_range != "real"
    gen = torch.Generator().manual_seed(args.seed)
    mean_image = data.train.x.mean(0).numpy()
    test = data.test.subset(slice(0, args.limit))
    noisy = corrupt(test.x, args.noise, gen, clip)
    y = test.y if model.cond_dim else None
    restored = denoise(model, noisy, y)
    everywhere = np.ones(test.x.shape, dtype=bool)
    err = restoration_errors(restored, test.x.numpy(), everywhere, mean_image)
    noisy_err = restoration_errors(noisy.numpy(), test.x.numpy(), everywhere, mean_image)["mse"]
    if args.images:
        x, y = select_inputs(args.images, data.test, model.x_shape, "--images")
        shown_noisy = corrupt(x, args.noise, gen, clip)
        shown = denoise(model, shown_noisy, y)
    else:
        x, shown_noisy, shown = test.x[: args.n], noisy[: args.n], restored[: args.n]
    fig = restoration_figure(
        as_images(shown_noisy.numpy(), model.x_shape), as_images(shown, model.x_shape),
        as_images(x.numpy(), model.x_shape),
        f"denoising {args.noise}: MSE {err['mse']:.4f} (noisy input {noisy_err:.4f}, "
        f"mean image {err['baseline_mse']:.4f})")
    save(fig, path, step)
    print(f"MSE over {len(test)} test images: denoised {err['mse']:.4f}, noisy input "
          f"{noisy_err:.4f}, mean-image baseline {err['baseline_mse']:.4f}")
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, shown)}")
    return 0
