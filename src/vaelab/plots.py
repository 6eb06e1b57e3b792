"""Figures (PNG) from results the other layers computed; no maths beyond layout here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vaelab.runfolder import atomic_write  # noqa: E402

if TYPE_CHECKING:
    from vaelab.training import TrainResult


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Writes a figure atomically and closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def tile(images: np.ndarray, ncol: int, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] -> one (rows*H, ncol*W[, 3]) array with white gaps."""
    n, c, h, w = images.shape
    nrow = math.ceil(n / ncol)
    canvas = np.ones((c, nrow * (h + pad) - pad, ncol * (w + pad) - pad), dtype=np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        canvas[:, r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = img
    return canvas[0] if c == 1 else canvas[:3].transpose(1, 2, 0)


def image_grid(images: np.ndarray, title: str, ncol: int | None = None,
               row_labels: Sequence[str] | None = None) -> Figure:
    """A figure of images (N, C, H, W) in a grid; values are clipped to [0, 1]."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0, 1)
    ncol = ncol or math.ceil(math.sqrt(len(images)))
    grid = tile(images, ncol)
    height, width = grid.shape[:2]
    scale = 7.0 / max(height, width)
    fig, ax = plt.subplots(figsize=(max(width * scale, 3), max(height * scale, 2) + 0.5))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.set_xticks([])
    if row_labels:
        h = images.shape[2] + 1
        ax.set_yticks([i * h + h / 2 - 1 for i in range(len(row_labels))], row_labels)
    else:
        ax.set_yticks([])
    return fig


def curves(history: list[dict[str, Any]], train_records: list[dict[str, Any]]) -> Figure:
    """Training ELBO per logged step and validation ELBO per epoch, against epochs."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    if train_records:
        ep = [r["epoch"] for r in train_records]
        ax1.plot(ep, [r["elbo"] for r in train_records], label="train ELBO", lw=1)
        ax2.plot(ep, [r["kl"] for r in train_records], label="train KL", lw=1)
    valid = [r for r in history if "valid_elbo" in r]
    if valid:
        ep = [r["epoch"] for r in valid]
        ax1.plot(ep, [r["valid_elbo"] for r in valid], "o-", ms=3, label="validation ELBO")
        ax2.plot(ep, [r["valid_kl"] for r in valid], "o-", ms=3, label="validation KL")
    ax1.set(xlabel="epoch", ylabel="ELBO (nats per example)", title="ELBO (higher is better)")
    ax2.set(xlabel="epoch", ylabel="KL (nats per example)", title="KL(q(z|x) || p(z))")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


def latent_scatter(codes: np.ndarray, labels: np.ndarray | None, title: str,
                   axis_names: tuple[str, str] = ("z[0]", "z[1]"),
                   class_names: Sequence[str] | None = None) -> Figure:
    """2-D codes (N, 2) as points coloured by class, with a legend."""
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=4, alpha=0.6)
    else:
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            pts = codes[labels == c]
            name = class_names[int(c)] if class_names is not None and int(c) < len(class_names) else str(c)
            ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.7, color=cmap(i % cmap.N), label=name)
        ax.legend(title="class", markerscale=3, fontsize=8, loc="center left",
                  bbox_to_anchor=(1.01, 0.5))
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1], title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def training_figures(result: TrainResult) -> None:
    """samples.png, reconstructions.png, curves.png and latent.png in the run folder."""
    import torch

    from vaelab.exploration import latent_codes, reconstruct, sample
    from vaelab.runfolder import read_metrics

    model, data, run = result.model, result.data, result.run
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
    samples = _as_images(sample(model, 64, generator=gen), model.x_shape)
    save_figure(image_grid(samples, "samples: z ~ p(z), mean of p(x|z)", ncol=8), run / "samples.png")
    part = data.test.subset(slice(0, 32))
    originals, recons = reconstruct(model, part.x, part.y)
    save_figure(reconstruction_grid(_as_images(originals, model.x_shape),
                                    _as_images(recons, model.x_shape)), run / "reconstructions.png")
    records = read_metrics(run)
    save_figure(curves([r for r in records if r.get("split") == "epoch"],
                       [r for r in records if r.get("split") == "train"]), run / "curves.png")
    codes, axes = latent_codes(model, data.test, limit=2000)
    labels = None if data.test.y is None else data.test.y[:len(codes)].numpy()
    save_figure(latent_scatter(codes, labels, f"test codes E_q[z] ({axes[2]})", axes[:2],
                               data.classes), run / "latent.png")


def reconstruction_grid(originals: np.ndarray, recons: np.ndarray, ncol: int = 8) -> Figure:
    """Rows of originals, each followed by a row of their reconstructions."""
    rows = []
    for i in range(0, len(originals), ncol):
        rows += [originals[i:i + ncol], recons[i:i + ncol]]
    labels = ["original", "reconstruction"] * (len(rows) // 2)
    return image_grid(np.concatenate(rows), "test images (odd rows) and reconstructions (even rows)",
                      ncol=ncol, row_labels=labels)


def _as_images(x: Any, x_shape: list[int]) -> np.ndarray:
    """Model-space arrays -> (N, C, H, W) for display; flat vectors become one-row strips."""
    x = np.asarray(x)
    if len(x_shape) == 3:
        return x.reshape(-1, *x_shape)
    d = int(np.prod(x_shape))
    side = math.isqrt(d)
    if side * side == d:
        return x.reshape(-1, 1, side, side)
    return x.reshape(-1, 1, 1, d)
