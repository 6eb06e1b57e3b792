"""Figures (PNG) from results the other layers computed; no maths beyond layout here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from vaelab.runfolder import atomic_write  # noqa: E402


def save_figure(fig: Figure, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Writes a figure atomically as PNG (with `metadata` as text chunks) and closes it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight",
                                               metadata=metadata))
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
               row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None,
               xlabel: str = "", ylabel: str = "") -> Figure:
    """A figure of images (N, C, H, W) in a grid; values are clipped to [0, 1].

    row_labels / col_labels name the rows / columns (tick labels); xlabel / ylabel the axes.
    """
    images = np.clip(np.asarray(images, dtype=np.float32), 0, 1)
    ncol = ncol or math.ceil(math.sqrt(len(images)))
    grid = tile(images, ncol)
    height, width = grid.shape[:2]
    scale = 7.0 / max(height, width)
    fig, ax = plt.subplots(figsize=(max(width * scale, 3), max(height * scale, 2) + 0.5))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    h, w = images.shape[2] + 1, images.shape[3] + 1  # one cell and its gap
    if col_labels:
        ax.set_xticks([j * w + w / 2 - 1 for j in range(len(col_labels))], col_labels,
                      fontsize=8, rotation=90 if max(map(len, col_labels)) > 6 else 0)
    else:
        ax.set_xticks([])
    if row_labels:
        ax.set_yticks([i * h + h / 2 - 1 for i in range(len(row_labels))], row_labels)
    else:
        ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(length=0)
    return fig


def row_grid(images: np.ndarray, title: str, row_labels: Sequence[str] | None = None,
             col_labels: Sequence[str] | None = None, xlabel: str = "",
             ylabel: str = "") -> Figure:
    """Images (R, K, C, H, W) as R rows of K: paths, traversals, arithmetic, restorations."""
    images = np.asarray(images)
    return image_grid(images.reshape(-1, *images.shape[2:]), title, ncol=images.shape[1],
                      row_labels=row_labels, col_labels=col_labels, xlabel=xlabel, ylabel=ylabel)


def manifold_figure(images: np.ndarray, grid: np.ndarray, title: str) -> Figure:
    """The decoded 2-D manifold (n, n, C, H, W), rows from high z[1] down, with z ticks."""
    n = len(grid)
    labels = [f"{v:.1f}" if i % max(1, n // 7) == 0 else "" for i, v in enumerate(grid)]
    return row_grid(images, title, row_labels=labels[::-1], col_labels=labels,
                    xlabel="z[0] (prior quantiles)", ylabel="z[1] (prior quantiles)")


def masked_rgb(images: np.ndarray, hidden: np.ndarray,
               colour: tuple[float, float, float] = (0.85, 0.2, 0.2)) -> np.ndarray:
    """Grey or RGB images (N, C, H, W) as RGB with hidden values (bool, same shape) coloured."""
    rgb = np.repeat(images, 3, axis=1) if images.shape[1] == 1 else images[:, :3].copy()
    mask = np.asarray(hidden).any(axis=1, keepdims=True)  # (N, 1, H, W)
    paint = np.asarray(colour, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.where(mask, paint, rgb)


def restoration_figure(corrupted: np.ndarray, restored: np.ndarray, original: np.ndarray,
                       title: str, hidden: np.ndarray | None = None) -> Figure:
    """Three rows of N images (N, C, H, W): corrupted (hidden values in red), restored, original."""
    if hidden is not None:
        corrupted = masked_rgb(np.clip(corrupted, 0, 1), hidden)
        restored, original = (masked_rgb(a, np.zeros_like(hidden)) for a in (restored, original))
    rows = np.stack([corrupted, restored, original])  # (3, N, C, H, W)
    names = ["masked (red: hidden)" if hidden is not None else "corrupted", "restored",
             "original"]
    return row_grid(rows, title, row_labels=names)


BOUND_NAMES = {"elbo": "ELBO", "iwae_bound": "IWAE bound"}  # metrics.jsonl key -> label


def curves(history: list[dict[str, Any]], train_records: list[dict[str, Any]],
           bound: str | None = "elbo", bound_label: str | None = None) -> Figure:
    """Left: the training objective's bound (logged under `bound`) per logged step and the
    validation ELBO per epoch; for an objective without a bound (a plain autoencoder) the
    reconstruction term instead. Right: the KL term, where there is one."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    key = bound or "reconstruction"
    label = bound_label or BOUND_NAMES.get(key, key)
    if train_records:
        ep = [r["epoch"] for r in train_records]
        ax1.plot(ep, [r[key] for r in train_records], label=f"train {label}", lw=1)
        if "kl" in train_records[0]:
            ax2.plot(ep, [r["kl"] for r in train_records], label="train KL", lw=1)
    valid_key = "valid_elbo" if bound else "valid_reconstruction"
    valid = [r for r in history if valid_key in r]
    if valid:
        ep = [r["epoch"] for r in valid]
        ax1.plot(ep, [r[valid_key] for r in valid], "o-", ms=3,
                 label="validation ELBO" if bound else "validation reconstruction")
        if "valid_kl" in valid[0]:
            ax2.plot(ep, [r["valid_kl"] for r in valid], "o-", ms=3, label="validation KL")
    what = "bounds on log p(x)" if bound else "reconstruction log p(x|z)"
    ax1.set(xlabel="epoch", ylabel="nats per example", title=f"{what} (higher is better)")
    ax2.set(xlabel="epoch", ylabel="KL (nats per example)", title="KL(q(z|x) || p(z))")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    return fig


def _scatter(ax: Any, codes: np.ndarray, labels: np.ndarray | None,
             class_names: Sequence[str] | None) -> None:
    if labels is None:
        ax.scatter(codes[:, 0], codes[:, 1], s=4, alpha=0.6)
        return
    classes = np.unique(labels)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, c in enumerate(classes):
        pts = codes[labels == c]
        named = class_names is not None and int(c) < len(class_names)
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.7, color=cmap(i % cmap.N),
                   label=class_names[int(c)] if class_names is not None and named else str(c))


def _legend(ax: Any) -> None:
    if ax.collections and ax.get_legend_handles_labels()[1]:
        ax.legend(title="class", markerscale=3, fontsize=8, loc="center left",
                  bbox_to_anchor=(1.01, 0.5))


def latent_scatter(codes: np.ndarray, labels: np.ndarray | None, title: str,
                   axis_names: tuple[str, str] = ("z[0]", "z[1]"),
                   class_names: Sequence[str] | None = None) -> Figure:
    """2-D codes (N, 2) as points coloured by class, with a legend."""
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    _scatter(ax, codes, labels, class_names)
    _legend(ax)
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1], title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def latent_figure(codes: np.ndarray, labels: np.ndarray | None, title: str,
                  axis_names: tuple[str, str], class_names: Sequence[str] | None = None,
                  manifold: np.ndarray | None = None, grid: np.ndarray | None = None) -> Figure:
    """The latent map: a class-coloured scatter, and for 2-D latents the decoded manifold
    (n, n, C, H, W) over the prior-quantile grid (n,) beside it, on the same z axes."""
    if manifold is None or grid is None:
        return latent_scatter(codes, labels, title, axis_names, class_names)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12.5, 5.6))
    _scatter(ax1, codes, labels, class_names)
    lo, hi = float(grid[0]), float(grid[-1])
    half = (hi - lo) / (len(grid) - 1) / 2  # each image covers one cell around its z
    ax1.add_patch(plt.Rectangle((lo - half, lo - half), hi - lo + 2 * half, hi - lo + 2 * half,
                                fill=False, ls="--", color="0.3", label="manifold area"))
    ax1.legend(title="class", markerscale=3, fontsize=8, loc="upper left",
               bbox_to_anchor=(-0.42, 1.0))
    ax1.set(xlabel=axis_names[0], ylabel=axis_names[1], title=title)
    ax1.grid(alpha=0.3)
    images = np.clip(np.asarray(manifold, dtype=np.float32), 0, 1)
    n = len(grid)
    canvas = tile(images.reshape(-1, *images.shape[2:]), n)  # white gaps between images
    ax2.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest",
               extent=(lo - half, hi + half, lo - half, hi + half))
    ax2.set(xlabel="z[0]", ylabel="z[1]",
            title=f"decoded manifold: mean of p(x|z), {n}x{n} prior quantiles")
    fig.tight_layout()
    return fig


def _prior_circles(ax: Any, codes: np.ndarray) -> None:
    """The prior N(0, I)'s 1- and 2-sd circles, and limits that show them whatever the codes'
    spread: codes piled up at the origin (a KL-only model) are then visibly piled up."""
    t = np.linspace(0, 2 * np.pi, 200)
    for r, style in ((1, "--"), (2, ":")):
        ax.plot(r * np.cos(t), r * np.sin(t), style, color="0.25", lw=1,
                label="p(z): 1 and 2 sd" if r == 1 else None)
    lo = min(-2.5, float(np.min(codes))) if len(codes) else -2.5
    hi = max(2.5, float(np.max(codes))) if len(codes) else 2.5
    margin = 0.04 * (hi - lo)
    ax.set_xlim(lo - margin, hi + margin)
    ax.set_ylim(lo - margin, hi + margin)
    ax.set_aspect("equal")


def compare_figure(panels: Sequence[tuple[str, np.ndarray]], labels: np.ndarray | None,
                   class_names: Sequence[str] | None, title: str) -> Figure:
    """One class-coloured scatter of 2-D codes (N, 2) per panel, side by side, one legend."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.2, 4.6))
    for ax, (name, codes) in zip(np.atleast_1d(axes), panels, strict=True):
        _scatter(ax, codes, None if labels is None else labels[:len(codes)], class_names)
        _prior_circles(ax, codes)
        ax.set(xlabel="z[0]", ylabel="z[1]", title=name)
        ax.grid(alpha=0.3)
    _legend(np.atleast_1d(axes)[-1])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def paired_rows(originals: np.ndarray, recons: np.ndarray, ncol: int = 8) -> np.ndarray:
    """Rows of up to `ncol` originals (N, C, H, W), each row followed by the same images'
    reconstructions, so every original sits right above its own reconstruction; a short last
    row is padded with blank (white) cells. Returns (2 * rows * ncol, C, H, W)."""
    blank = np.ones((1, *originals.shape[1:]), dtype=np.float32)
    rows = []
    for i in range(0, len(originals), ncol):
        pad = [blank] * (ncol - len(originals[i:i + ncol]))
        rows += [np.concatenate([originals[i:i + ncol], *pad]),
                 np.concatenate([recons[i:i + ncol], *pad])]
    return np.concatenate(rows)


def reconstruction_grid(originals: np.ndarray, recons: np.ndarray, ncol: int = 8) -> Figure:
    """Originals over their reconstructions (see `paired_rows`), both (N, C, H, W)."""
    ncol = max(1, min(ncol, len(originals)))
    images = paired_rows(originals, recons, ncol)
    labels = ["original", "reconstruction"] * (len(images) // (2 * ncol))
    return image_grid(images, "test images over their reconstructions", ncol=ncol,
                      row_labels=labels)


def as_images(x: Any, x_shape: Sequence[int]) -> np.ndarray:
    """Model-space arrays -> (N, C, H, W) for display. A flat vector of square length is drawn
    as a square image; any other flat vector (train with --image-shape H,W to give its real
    geometry) as a band, one column per value, a sixth as tall as it is wide."""
    x = np.asarray(x)
    if len(x_shape) == 3:
        return x.reshape(-1, *x_shape)
    d = int(np.prod(x_shape))
    side = math.isqrt(d)
    if side * side == d:
        return x.reshape(-1, 1, side, side)
    band = x.reshape(-1, 1, 1, d)
    return np.repeat(band, max(1, math.ceil(d / 6)), axis=2)


def as_image_rows(x: Any, x_shape: Sequence[int]) -> np.ndarray:
    """Model-space arrays (R, K, *x_shape) -> (R, K, C, H, W) for `row_grid`."""
    x = np.asarray(x)
    images = as_images(x.reshape(-1, *x_shape), x_shape)
    return images.reshape(x.shape[0], x.shape[1], *images.shape[1:])


def confusion_matrix(counts: np.ndarray, title: str, class_names: Sequence[str] | None = None,
                     xlabel: str = "predicted class", ylabel: str = "true class") -> Figure:
    """A K x K heat map of counts (K, K), rows the true classes, columns the predicted ones,
    each cell with its count; the diagonal (correct) is outlined."""
    counts = np.asarray(counts)
    k = len(counts)
    names = list(class_names)[:k] if class_names is not None and len(class_names) >= k else [
        str(c) for c in range(k)]
    side = min(11.0, 2.2 + 0.55 * k)
    fig, ax = plt.subplots(figsize=(side + 0.9, side))
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, int(counts.max())))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="examples")
    if k <= 30:  # the numbers stay readable
        dark = counts > 0.55 * max(1, int(counts.max()))
        for (i, j), value in np.ndenumerate(counts):
            ax.text(j, i, str(int(value)), ha="center", va="center",
                    fontsize=9 if k <= 12 else 7,
                    color="white" if dark[i, j] else ("0.2" if value else "0.75"))
    for c in range(k):
        ax.add_patch(plt.Rectangle((c - 0.5, c - 0.5), 1, 1, fill=False, lw=1.2, color="0.3"))
    rotate = 90 if max(map(len, names)) > 3 else 0
    ax.set_xticks(range(k), names, rotation=rotate)
    ax.set_yticks(range(k), names)
    ax.tick_params(length=0)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.tight_layout()
    return fig
