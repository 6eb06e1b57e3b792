"""Exploration: what a trained VAE does, as arrays (figures are made in vaelab.plots)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vaelab.data import Split
from vaelab.models import VAE


def _device(model: VAE) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sample(model: VAE, n: int, y: Tensor | None = None,
           generator: torch.Generator | None = None) -> np.ndarray:
    """n draws z ~ p(z) decoded to the mean of p(x|z): (n, *x_shape) numpy float32."""
    return model.sample(n, y, generator=generator).float().cpu().numpy()


@torch.no_grad()
def reconstruct(model: VAE, x: Tensor, y: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(originals, reconstructions), each (N, *x_shape): x decoded from its posterior mean."""
    from vaelab.training import condition

    dev = _device(model)
    cond = condition(None if y is None else y.to(dev), model.cond_dim)
    recon = model.reconstruct(x.to(dev), cond)
    return x.cpu().numpy(), recon.float().cpu().numpy()


@torch.no_grad()
def encode_means(model: VAE, split: Split, limit: int | None = None,
                 batch_size: int = 1000) -> np.ndarray:
    """Posterior means E_q[z|x] (N, D) for the first `limit` examples of a split."""
    from vaelab.training import condition

    dev = _device(model)
    n = len(split) if limit is None else min(limit, len(split))
    out = []
    for i in range(0, n, batch_size):
        j = min(i + batch_size, n)
        y = None if split.y is None else condition(split.y[i:j].to(dev), model.cond_dim)
        out.append(model.encode(split.x[i:j].to(dev), y).mean.float().cpu())
    return torch.cat(out).numpy()


def latent_codes(model: VAE, split: Split, limit: int | None = None,
                 method: str = "auto") -> tuple[np.ndarray, tuple[str, str, str]]:
    """2-D coordinates of test codes and (x name, y name, method): z itself, PCA or t-SNE."""
    codes = encode_means(model, split, limit)
    if codes.shape[1] == 1:
        return np.concatenate([codes, np.zeros_like(codes)], 1), ("z[0]", "(none)", "1-D latent")
    if codes.shape[1] == 2 and method in ("auto", "pca"):
        return codes, ("z[0]", "z[1]", "2-D latent")
    if method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, init="pca", random_state=0).fit_transform(codes)
        return xy, ("t-SNE 1", "t-SNE 2", "t-SNE")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(codes)
    var = pca.explained_variance_ratio_
    return pca.transform(codes), (f"PC 1 ({var[0]:.0%} var.)", f"PC 2 ({var[1]:.0%} var.)", "PCA")
