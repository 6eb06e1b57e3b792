"""`vaelab compare-latent`: what each term of the ELBO does to the latent space."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vaelab import exploration
from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.data import Data
from vaelab.training import fit

COMPARE_OBJECTIVES = [("ae", "plain autoencoder (reconstruction only)"),
                      ("kl-only", "KL only (codes ignore x)"),
                      ("elbo", "VAE (reconstruction + KL)")]


def compare_latent(data: Data, runs_dir: str | Path, *, epochs: int = 10,
                   hidden: Sequence[int] = (128,), limit: int = 2000, seed: int = 0,
                   device: str = "cpu") -> list[tuple[str, np.ndarray]]:
    """Trains a plain autoencoder, a KL-only model and a VAE, each with a 2-D latent.

    The three share the MLP encoder/decoder and differ only in the objective (see
    vaelab.objectives), so the maps show what each term of the ELBO does to the latent space.
    Small batches and a large step size make a few epochs enough on small datasets.

    Args:
        data: the dataset (from vaelab.data.load_data).
        runs_dir: where the three run folders (ae, kl-only, elbo) are written.
        epochs, hidden, seed: training settings shared by the three models.
        limit: how many test codes to return.

    Returns:
        [(title, codes (N, 2))] in the order ae, kl-only, VAE; labels are data.test.y[:N].
    """
    panels = []
    for objective, title in COMPARE_OBJECTIVES:
        config = Config(data=DataConfig(name=data.name),
                        model=ModelConfig(latent_dim=2, hidden=list(hidden)),
                        objective=ObjectiveConfig(name=objective),
                        train=TrainConfig(epochs=epochs, seed=seed, batch_size=32, lr=3e-3))
        result = fit(config, Path(runs_dir) / objective, data=data, overwrite=True,
                     device=device, progress=False)
        panels.append((title, exploration.encode_means(result.model, data.test, limit)))
    return panels
