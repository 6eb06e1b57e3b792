"""vaelab latent: the map of test codes, and the decoded manifold of a 2-D latent."""

from __future__ import annotations

import argparse

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int

NAME = "latent"
HELP = "scatter of test codes coloured by class (PCA/t-SNE above 2-D); 2-D: the decoded manifold"
EXAMPLE = "vaelab latent runs/digits --method tsne"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("--method", choices=["auto", "pca", "tsne"], default="auto",
                   help="auto: z itself for 2-D latents, else PCA (default auto)")
    p.add_argument("--limit", type=positive_int, default=2000, help="test codes to plot (2000)")
    p.add_argument("--grid", type=positive_int, default=15,
                   help="manifold images per side for 2-D latents (default 15)")
    add_output_arguments(p, "latent-map.png")


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import save_array
    from vaelab.data import load_data
    from vaelab.exploration import latent_codes, manifold
    from vaelab.plots import as_image_rows, latent_figure, save_figure
    from vaelab.runfolder import load, read_config

    path = output_path(args, "latent-map.png")
    model = load(args.run, device=args.device)
    data = load_data(read_config(args.run).data)
    codes, (xname, yname, method) = latent_codes(model, data.test, args.limit, args.method)
    labels = None if data.test.y is None else data.test.y[:len(codes)].numpy()
    images = grid = None
    if model.latent_dim == 2 and not model.cond_dim:
        images, grid = manifold(model, args.grid)
    title = f"{len(codes)} test codes E_q[z|x] of {args.run.name} ({method})"
    fig = latent_figure(codes, labels, title, (xname, yname), data.classes,
                        None if images is None else as_image_rows(images, model.x_shape), grid)
    save_figure(fig, path)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, codes)}  (the {method} coordinates, (N, 2))")
        if images is not None:
            print(f"wrote {save_array(path.with_name(path.stem + '-manifold.png'), images)}")
    return 0
