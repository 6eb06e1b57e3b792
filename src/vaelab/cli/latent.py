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
    from vaelab.cli.common import load_run, save_array
    from vaelab.workflows import figures

    path = output_path(args, "latent-map.png")
    model, data, step = load_run(args)
    fig, codes, images = figures.latent_map(model, data, limit=args.limit, method=args.method,
                                            grid=args.grid, name=args.run.name)
    figures.save(fig, path, step)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, codes)}  (the map's coordinates, (N, 2))")
        if images is not None:
            print(f"wrote {save_array(path.with_name(path.stem + '-manifold.png'), images)}")
    return 0
