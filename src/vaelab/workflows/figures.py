"""The figures of a trained model, made one way for the CLI commands and the HTML report alike.

Each function computes arrays with vaelab.exploration, draws them with vaelab.plots and returns
(figure, arrays); `save` writes a figure into a run folder stamped with the model step it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from vaelab import exploration, plots
from vaelab.data import Data, Split
from vaelab.errors import VaelabError
from vaelab.models import M2, VAE, one_hot
from vaelab.runfolder import STEP_KEY

MAX_GRID = 400  # images drawn in one sample grid (20 x 20); the .npy array keeps them all


def save(fig: Figure, path: Path, step: int | None) -> Path:
    """Writes the PNG, recording the model step it was made from (vaelab.runfolder)."""
    return plots.save_figure(fig, path, {} if step is None else {STEP_KEY: str(step)})


def samples(model: VAE, n: int, *, seed: int = 0, labels: Sequence[int] | None = None,
            name: str = "") -> tuple[Figure, np.ndarray, str | None]:
    """n samples (one row of n per label for a conditional model given several labels).

    Returns the figure, the samples (n or len(labels) * n, *x_shape) and a note when the grid
    shows only the first MAX_GRID of them.
    """
    device = next(model.parameters()).device
    rows = []
    row_labels: Sequence[int | None] = labels or [None]
    for label in row_labels:  # the same seed for every row: a column keeps its z
        gen = torch.Generator(device=device).manual_seed(seed)
        y = None if label is None else one_hot(torch.full((n,), label, device=device),
                                               model.cond_dim)
        rows.append(exploration.sample(model, n, y, generator=gen))
    images = np.concatenate(rows)
    shown = plots.as_images(images[:MAX_GRID], model.x_shape)
    note = (f"the PNG shows the first {MAX_GRID} of {len(images)} samples"
            if len(images) > MAX_GRID else None)
    of = f" of {name}" if name else ""
    if labels is not None and len(labels) > 1:
        ncol = min(n, MAX_GRID)
        fig = plots.image_grid(shown, f"samples{of}: one row per class, one z per column",
                               ncol=ncol, row_labels=[str(c) for c in labels][:len(shown) // ncol])
    else:
        which = "" if labels is None else f", class {labels[0]}"
        fig = plots.image_grid(shown, f"{len(images)} samples{of}{which}: z ~ p(z), mean of p(x|z)"
                               + (f" (first {MAX_GRID} shown)" if note else ""))
    return fig, images, note


def reconstructions(model: VAE, split: Split, n: int) -> tuple[Figure, np.ndarray]:
    """The first n images of a split over their reconstructions; arrays (2, n, *x_shape)."""
    part = split.subset(slice(0, n))
    originals, recons = exploration.reconstruct(model, part.x, part.y)
    fig = plots.reconstruction_grid(plots.as_images(originals, model.x_shape),
                                    plots.as_images(recons, model.x_shape))
    return fig, np.stack([originals, recons])


def interpolations(model: VAE, test: Split, starts: Sequence[str], ends: Sequence[str], *,
                   steps: int = 10, method: str = "linear", classes: Sequence[str] | None = None,
                   name: str = "") -> tuple[Figure, np.ndarray]:
    """Decoded paths between pairs of inputs (test-set indices or image files); the row labels
    name each endpoint and, when the test set has labels, its class."""
    if len(starts) != len(ends):
        raise VaelabError(f"--from names {len(starts)} images and --to {len(ends)}; "
                          f"give one end per start")
    xa, ya = exploration.select_inputs(starts, test, model.x_shape, "--from")
    xb, _ = exploration.select_inputs(ends, test, model.x_shape, "--to")
    paths = exploration.interpolate(model, xa, xb, steps, method, ya)  # (P, T, *x_shape)
    rows = [f"{_input_name(a, test, classes)} -> {_input_name(b, test, classes)}"
            for a, b in zip(starts, ends, strict=True)]
    what = "slerp (spherical, White 2016)" if method == "slerp" else "linear"
    fig = plots.row_grid(plots.as_image_rows(paths, model.x_shape),
                         f"{what} interpolation in latent space" + (f" ({name})" if name else ""),
                         row_labels=rows, col_labels=[f"{t:.2f}" for t in np.linspace(0, 1, steps)],
                         xlabel="t (0: reconstruction of A, 1: reconstruction of B)")
    return fig, paths


def _input_name(spec: str, test: Split, classes: Sequence[str] | None, width: int = 24) -> str:
    """'12 (7)' for test image 12 of class 7; a file name, shortened, for a file."""
    if spec.lstrip("-").isdigit():
        if test.y is None or not 0 <= int(spec) < len(test):
            return spec
        y = int(test.y[int(spec)])
        return f"{spec} ({classes[y] if classes and y < len(classes) else y})"
    return spec if len(spec) <= width else "..." + spec[-(width - 3):]


def traversals(model: VAE, test: Split, dims: Sequence[int] | None = None, *,
               radius: float = 3.0, steps: int = 9, index: int | None = None,
               name: str = "") -> tuple[Figure, np.ndarray]:
    """One latent dimension at a time around z = 0 (or test image `index`'s code); dims None:
    the (up to 8) dimensions with the largest KL."""
    kl = exploration.kl_per_dimension(model, test)
    dims = list(dims) if dims is not None else exploration.top_dims(kl, min(8, model.latent_dim))
    z0, y, start = None, None, "the prior mean z = 0"
    if index is None and model.cond_dim:
        if test.y is None:
            raise VaelabError("this is a conditional VAE: pass --index to start from a test image")
        index = 0  # a conditional model needs a label: start from a test image
    if index is not None:
        x, y = exploration.select_inputs([str(index)], test, model.x_shape, "--index")
        z0, start = exploration.encode(model, x, y)[0], f"test image {index}"
    values = np.linspace(-radius, radius, steps).tolist()
    images = exploration.traverse(model, dims, values, z0, y)  # (K, V, *x_shape)
    fig = plots.row_grid(plots.as_image_rows(images, model.x_shape),
                         f"latent traversals around {start}" + (f" ({name})" if name else ""),
                         row_labels=[f"z[{d}] (KL {kl[d]:.2f})" for d in dims],
                         col_labels=[f"{v:+.1f}" for v in values],
                         xlabel="offset added to one dimension (others fixed)")
    return fig, images


def latent_map(model: VAE, data: Data, *, limit: int = 2000, method: str = "auto",
               grid: int = 15, name: str = "") -> tuple[Figure, np.ndarray, np.ndarray | None]:
    """Test codes coloured by class (PCA/t-SNE above 2-D) and, for a 2-D unconditional latent,
    the decoded manifold beside them; returns (figure, coordinates (N, 2), manifold or None)."""
    codes, (xname, yname, how) = exploration.latent_codes(model, data.test, limit, method)
    labels = None if data.test.y is None else data.test.y[:len(codes)].numpy()
    images = cells = None
    if model.latent_dim == 2 and not model.cond_dim:
        images, cells = exploration.manifold(model, grid)
    title = f"{len(codes)} test codes E_q[z|x]" + (f" of {name}" if name else "") + f" ({how})"
    fig = plots.latent_figure(codes, labels, title, (xname, yname), data.classes,
                              None if images is None else plots.as_image_rows(images, model.x_shape),
                              cells)
    return fig, codes, images


def confusion(counts: np.ndarray, classes: Sequence[str] | None = None, *, split: str = "test",
              name: str = "") -> Figure:
    """M2's confusion matrix, counts (K, K) from vaelab.evaluation.classification_error (rows
    true classes, columns argmax q(y|x)), titled with the error it implies."""
    counts = np.asarray(counts)
    n = int(counts.sum())
    wrong = n - int(np.trace(counts))
    of = f" of {name}" if name else ""
    title = (f"classifier q(y|x){of} on {n} {split} images\n"
             f"{split} error {100 * wrong / max(n, 1):.2f}% ({wrong} wrong)")
    return plots.confusion_matrix(counts, title, classes,
                                  xlabel="predicted class (argmax q(y|x))", ylabel="true class")


def analogies(model: VAE, test: Split, n: int = 10, *, seed: int = 0,
              classes: Sequence[str] | None = None, name: str = "") -> tuple[Figure, np.ndarray]:
    """Class analogies (Kingma et al. 2014, fig. 1): n test images drawn with `seed`, one row
    each: the image, then its style z = E_q[z|x,y] decoded as every class.

    Returns the figure and the images (n, 1 + K, *x_shape), column 0 the test images.
    """
    if not model.cond_dim or (not isinstance(model, M2) and test.y is None):
        raise VaelabError("analogies need a model of the class: an M2 run (train with --family "
                          "m2), or a conditional run (--conditional) whose test set has labels")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n]
    part = test.subset(pick)
    grid = exploration.analogies(model, part.x, part.y)  # (n, K, *x_shape)
    used = exploration.style_classes(model, part.x, part.y).tolist()
    images = np.concatenate([part.x.numpy()[:, None], grid], 1)

    def class_name(c: int) -> str:
        return classes[c] if classes is not None and c < len(classes) else str(c)

    known = [part.y is not None and int(part.y[i]) >= 0 for i in range(len(pick))]
    rows = [f"{int(i)}: {class_name(c)}" + ("" if sure else "?")
            for i, c, sure in zip(pick, used, known, strict=True)]
    how = " (?: class guessed by q(y|x))" if not all(known) else ""
    shown = plots.as_image_rows(images, model.x_shape)
    fig = plots.row_grid(shown,
                         "analogies" + (f" of {name}" if name else "")
                         + ": each row's style z = E_q[z|x,y], decoded as every class",
                         row_labels=rows, col_labels=["input", *map(class_name, range(model.cond_dim))],
                         xlabel="class y of p(x|y,z)", ylabel="test image: its class" + how)
    fig.axes[0].axvline(shown.shape[-1], color="tab:red", lw=2)  # the inputs | the analogies
    return fig, images
