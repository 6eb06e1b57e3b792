"""vaelab compare-latent: latent maps of a plain autoencoder, a KL-only model and a VAE."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaelab.cli.common import int_list, positive_int
from vaelab.errors import VaelabError

NAME = "compare-latent"
HELP = "train an autoencoder, a KL-only model and a VAE (2-D latents) and compare their maps"
EXAMPLE = "vaelab compare-latent --data digits --epochs 10"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default="digits", help="dataset name or path (default digits)")
    p.add_argument("--data-dir", help="folder holding dataset files")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs per model (10)")
    p.add_argument("--hidden", type=int_list, default=[128], help="hidden sizes (default 128)")
    p.add_argument("--limit", type=positive_int, default=2000, help="test codes to plot (2000)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"),
                   help="the three runs go to RUNS_DIR/compare-latent-DATA/{ae,kl-only,elbo}")
    p.add_argument("--out", type=Path, default=None,
                   help="the PNG (default: RUNS_DIR/compare-latent-DATA/compare-latent.png)")
    p.add_argument("--save-array", action="store_true",
                   help="also write the codes as a .npy array (3, N, 2) beside the PNG")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | mps (default: cpu)")


def execute(args: argparse.Namespace) -> int:
    import numpy as np

    from vaelab.cli.common import save_array
    from vaelab.config import DataConfig
    from vaelab.data import load_data
    from vaelab.plots import compare_figure, save_figure
    from vaelab.workflows import compare_latent

    data = load_data(DataConfig(name=args.data, data_dir=args.data_dir))
    folder = args.runs_dir / f"compare-latent-{Path(data.name).stem}"
    path = args.out if args.out is not None else folder / "compare-latent.png"
    if path.suffix.lower() != ".png":
        raise VaelabError(f"--out {path}: expected a .png file name")
    panels = compare_latent(data, folder, epochs=args.epochs, hidden=args.hidden,
                            limit=args.limit, seed=args.seed, device=args.device)
    labels = None if data.test.y is None else data.test.y.numpy()
    fig = compare_figure(panels, labels, data.classes,
                         f"{data.name}: test codes E_q[z|x] after {args.epochs} epochs")
    save_figure(fig, path)
    print(f"wrote {path} (runs in {folder})")
    if args.save_array:
        print(f"wrote {save_array(path, np.stack([codes for _, codes in panels]))}")
    return 0
