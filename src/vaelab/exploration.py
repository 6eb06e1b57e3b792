"""Exploration: what a trained VAE does, as arrays (figures are made in vaelab.plots).

Every function here takes a model (and tensors) and returns numpy arrays, so a notebook can use
the same results as the CLI commands: sampling, reconstruction, interpolation (linear or slerp),
attribute arithmetic, latent traversals, latent maps, inpainting and denoising, and the class
analogies of a semi-supervised (M2) or conditional model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaelab.data import Split
from vaelab.errors import VaelabError
from vaelab.models import M2, VAE, one_hot

INPAINT_STEPS = 5  # encode/decode rounds with observed pixels clamped (see `inpaint`)


def _device(model: VAE) -> torch.device:
    param = next(model.parameters(), None)
    return torch.device("cpu") if param is None else param.device


def _cond(model: VAE, y: Tensor | None) -> Tensor | None:
    """The condition a (conditional) model needs for labels y (B,), on the model's device."""
    if not model.cond_dim:
        return None
    if y is None:
        raise VaelabError("this is a conditional VAE: labels are needed to encode or decode")
    return one_hot(y.to(_device(model)), model.cond_dim)


# ---------------------------------------------------------------- encode, decode, sample
@torch.no_grad()
def sample(model: VAE, n: int, y: Tensor | None = None,
           generator: torch.Generator | None = None) -> np.ndarray:
    """n draws z ~ p(z) decoded to the mean of p(x|z): (n, *x_shape) numpy float32."""
    return model.sample(n, y, generator=generator).float().cpu().numpy()


@torch.no_grad()
def reconstruct(model: VAE, x: Tensor, y: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(originals, reconstructions), each (N, *x_shape): x decoded from its posterior mean."""
    recon = model.reconstruct(x.to(_device(model)), _cond(model, y))
    return x.cpu().numpy(), recon.float().cpu().numpy()


@torch.no_grad()
def encode(model: VAE, x: Tensor, y: Tensor | None = None) -> Tensor:
    """Posterior means E_q[z|x] (N, D) of a batch x (N, *x_shape), on the model's device."""
    return model.encode(x.to(_device(model)), _cond(model, y)).mean


@torch.no_grad()
def decode(model: VAE, z: Tensor, y: Tensor | None = None) -> np.ndarray:
    """The mean of p(x|z) for codes z (..., D): (..., *x_shape) numpy float32.

    For a conditional model, y (N,) labels one code each when z is (N, D), or (N, T, D).
    """
    z = z.to(_device(model))
    cond = _cond(model, y)
    if cond is not None and z.dim() == 3:  # (N, T, D): one label per row
        cond = cond[:, None, :].expand(*z.shape[:2], cond.shape[-1])
    return model.decode(z, cond).mean.float().cpu().numpy()


@torch.no_grad()
def encode_means(model: VAE, split: Split, limit: int | None = None,
                 batch_size: int = 1000) -> np.ndarray:
    """Posterior means E_q[z|x] (N, D) for the first `limit` examples of a split."""
    n = len(split) if limit is None else min(limit, len(split))
    out = []
    for i in range(0, n, batch_size):
        j = min(i + batch_size, n)
        y = None if split.y is None else split.y[i:j]
        out.append(encode(model, split.x[i:j], y if model.cond_dim else None).float().cpu())
    return torch.cat(out).numpy()


# ---------------------------------------------------------------- interpolation
def latent_path(za: Tensor, zb: Tensor, steps: int, method: str = "linear") -> Tensor:
    """Codes on a path from za to zb (each (P, D) or (D,)): (P, steps, D) or (steps, D).

    linear: z(t) = (1 - t) za + t zb.
    slerp: spherical interpolation of the vectors themselves (Shoemake 1985; White 2016,
    "Sampling Generative Networks", arXiv:1609.04468, and his code in soumith/dcgan.torch
    issue 14): z(t) = sin((1 - t) W) / sin W * za + sin(t W) / sin W * zb, W the angle
    between za and zb.
    With endpoints of equal norm every code on the path keeps that norm, so it never cuts
    through the low-norm centre where a high-dimensional prior has almost no mass (a straight
    line does). With unequal norms the norm stays between the endpoints' norms when
    W <= 90 degrees; wider angles can take it outside. Where the formula is 0/0: nearly
    parallel codes and a zero code give the straight line (the limit); opposite codes (sin W
    below the square root of the float epsilon) give half a great circle through a fixed
    direction perpendicular to za, the norm moving linearly from |za| to |zb|. In one
    dimension there is no circle: slerp is the straight line. The endpoints are returned exactly.
    """
    if steps < 2:
        raise VaelabError(f"--steps must be at least 2 (the two endpoints), got {steps}")
    t = torch.linspace(0, 1, steps, device=za.device, dtype=za.dtype)[:, None]  # (T, 1)
    a, b = za[..., None, :], zb[..., None, :]  # (..., 1, D)
    line = (1 - t) * a + t * b  # (..., T, D)
    if method not in ("linear", "slerp"):
        raise VaelabError(f"--method must be linear or slerp, not '{method}'")
    if method == "linear" or za.shape[-1] == 1:
        return line
    tiny, near = torch.finfo(za.dtype).tiny, torch.finfo(za.dtype).eps ** 0.5
    ra, rb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)  # (..., 1, 1)
    ua, ub = a / ra.clamp_min(tiny), b / rb.clamp_min(tiny)
    # W from |ua - ub| = 2 sin(W/2) and |ua + ub| = 2 cos(W/2): accurate at every angle, where
    # arccos of the dot product loses half the digits near 0 and 180 degrees
    d, s = (ua - ub).norm(dim=-1, keepdim=True), (ua + ub).norm(dim=-1, keepdim=True)
    w, sin_w, cos_w = 2 * torch.atan2(d, s), d * s / 2, (s - d) * (s + d) / 4
    opposite = (sin_w < near) & (cos_w < 0)
    # e: the unit vector with ub = cos W ua + sin W e; opposite codes span no plane, so take
    # the basis vector least aligned with ua, made perpendicular to it
    k = ua.abs().argmin(dim=-1, keepdim=True)
    e_k = torch.zeros_like(ua).scatter_(-1, k, 1.0) - ua.gather(-1, k) * ua
    e = torch.where(opposite, e_k, ub - cos_w * ua)
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(tiny)
    u = torch.cos(t * w) * ua + torch.sin(t * w) * e  # (..., T, D) the unit great circle
    # White's formula rewritten as |za| u(t) + (|zb| - |za|) sin(tW) / sin W ub: the same
    # vector, without cancellation near 180 degrees, and exactly of norm r when both are r
    gain = torch.where(opposite, t * u, torch.sin(t * w) / torch.where(sin_w < near, 1, sin_w) * ub)
    z = ra * u + (rb - ra) * gain
    straight = ((sin_w < near) & (cos_w >= 0)) | (ra == 0) | (rb == 0)
    z = torch.where(straight, line, z)
    return torch.where(t == 0, a, torch.where(t == 1, b, z))


@torch.no_grad()
def interpolate(model: VAE, xa: Tensor, xb: Tensor, steps: int = 10, method: str = "linear",
                y: Tensor | None = None) -> np.ndarray:
    """Decoded paths between the posterior means of xa and xb.

    Args:
        model: a trained VAE.
        xa, xb: P start and P end inputs, each (P, *x_shape).
        steps: T points per path, endpoints included (t = 0 decodes to A's reconstruction).
        method: linear | slerp (see `latent_path`).
        y: labels (P,) for a conditional model (the path keeps A's label).

    Returns:
        (P, T, *x_shape) the mean of p(x|z) along each path.
    """
    z = latent_path(encode(model, xa, y), encode(model, xb, y), steps, method)  # (P, T, D)
    return decode(model, z, y)


# ---------------------------------------------------------------- attribute arithmetic
def attribute_vector(z: Tensor | np.ndarray, has: Tensor | np.ndarray) -> np.ndarray:
    """mean(z | attribute) - mean(z | no attribute): (D,) from codes z (N, D), flags has (N,).

    The "smile vector" of White (2016) and Larsen et al. (2016).
    """
    z, has = np.asarray(z, dtype=np.float64), np.asarray(has).astype(bool)
    if has.all() or not has.any():
        raise VaelabError(f"the attribute needs examples with and without it; got {int(has.sum())} "
                          f"of {len(has)} with it")
    return (z[has].mean(0) - z[~has].mean(0)).astype(np.float32)


@torch.no_grad()
def arithmetic(model: VAE, x: Tensor, vector: np.ndarray | Tensor, scales: Sequence[float],
               y: Tensor | None = None) -> np.ndarray:
    """Decodes E_q[z|x] + s * vector for each scale s: (N, len(scales), *x_shape)."""
    z = encode(model, x, y)  # (N, D)
    v = torch.as_tensor(np.asarray(vector), dtype=z.dtype, device=z.device)
    s = torch.tensor(list(scales), dtype=z.dtype, device=z.device)[:, None]  # (S, 1)
    return decode(model, z[:, None, :] + s * v, y)  # (N, S, D) -> (N, S, *x_shape)


# ---------------------------------------------------------------- traversals
def traversal_codes(z0: Tensor, dims: Sequence[int], values: Sequence[float]) -> Tensor:
    """(K, V, D) copies of z0 (D,), row k with dimension dims[k] moved by each of the V values."""
    offsets = torch.tensor(list(values), dtype=z0.dtype, device=z0.device)
    z = z0.expand(len(dims), len(offsets), z0.shape[-1]).clone()
    for k, d in enumerate(dims):
        z[k, :, d] = z0[d] + offsets
    return z


@torch.no_grad()
def traverse(model: VAE, dims: Sequence[int], values: Sequence[float], z0: Tensor | None = None,
             y: Tensor | None = None) -> np.ndarray:
    """Varies one latent dimension at a time around z0 (default: the prior mean, 0).

    Args:
        dims: K latent dimensions to move.
        values: V offsets added to z0[d], e.g. linspace(-3, 3, 9).
        z0: the code (D,) to start from.
        y: one label (1,) for a conditional model.

    Returns:
        (K, V, *x_shape) decoded means.
    """
    bad = [d for d in dims if not 0 <= d < model.latent_dim]
    if bad:
        raise VaelabError(f"--dims {bad[0]}: the latent has dimensions 0..{model.latent_dim - 1}")
    if z0 is None:
        z0 = torch.zeros(model.latent_dim, device=_device(model))
    z = traversal_codes(z0.to(_device(model)), dims, values)
    y = None if y is None else y.expand(len(dims))
    return decode(model, z, y)


@torch.no_grad()
def kl_per_dimension(model: VAE, split: Split, limit: int | None = 2000) -> np.ndarray:
    """Average KL(q(z_d|x) || p(z_d)) of each latent dimension over a split: (D,)."""
    from vaelab.objectives import kl_per_dim

    n = len(split) if limit is None else min(limit, len(split))
    y = None if split.y is None else split.y[:n]
    qz = model.encode(split.x[:n].to(_device(model)), _cond(model, y))
    return kl_per_dim(qz, model.prior(qz.mean)).float().mean(0).cpu().numpy()


def top_dims(kl: np.ndarray, k: int) -> list[int]:
    """The k dimensions with the largest KL (the ones the model uses), largest first."""
    return [int(d) for d in np.argsort(-np.asarray(kl), kind="stable")[:k]]


# ---------------------------------------------------------------- latent maps
def latent_codes(model: VAE, split: Split, limit: int | None = None,
                 method: str = "auto") -> tuple[np.ndarray, tuple[str, str, str]]:
    """2-D coordinates of test codes and (x name, y name, method): z itself, PCA or t-SNE."""
    codes = encode_means(model, split, limit)
    if codes.shape[1] == 1:
        return np.concatenate([codes, np.zeros_like(codes)], 1), ("z[0]", "(none)", "1-D latent")
    if codes.shape[1] == 2 and method in ("auto", "pca"):
        return codes, ("z[0]", "z[1]", "2-D latent")
    if len(codes) < 3:  # PCA and t-SNE need a few points
        return codes[:, :2], ("z[0]", "z[1]", "first two dimensions: too few codes to project")
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(codes) - 1) / 3)
        method = "exact" if len(codes) <= 400 else "barnes_hut"  # exact is faster when small
        xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=perplexity,
                  method=method).fit_transform(codes)
        return xy, ("t-SNE 1", "t-SNE 2", "t-SNE")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(codes)
    var = pca.explained_variance_ratio_
    return pca.transform(codes), (f"PC 1 ({var[0]:.0%} var.)", f"PC 2 ({var[1]:.0%} var.)", "PCA")


@torch.no_grad()
def manifold(model: VAE, n: int = 15, edge: float = 0.05,
             y: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The decoded 2-D latent manifold (Kingma & Welling 2014, fig. 4).

    z runs over the prior's quantiles Phi^-1(p), p evenly spaced in [edge, 1 - edge], so each
    cell covers the same prior mass.

    Returns:
        images (n, n, *x_shape): row i has z[1] = grid[n - 1 - i] (top = largest), column j
        z[0] = grid[j]; and grid (n,).
    """
    from scipy.stats import norm

    if model.latent_dim != 2:
        raise VaelabError(f"the manifold grid needs a 2-D latent; this model's is "
                          f"{model.latent_dim}-D")
    grid = norm.ppf(np.linspace(edge, 1 - edge, n)).astype(np.float32)
    z0, z1 = np.meshgrid(grid, grid[::-1])  # (n, n) each; rows go down in z[1]
    z = torch.tensor(np.stack([z0, z1], -1), device=_device(model))  # (n, n, 2)
    return decode(model, z, None if y is None else y.expand(n)), grid


# ---------------------------------------------------------------- class analogies
@torch.no_grad()
def style_classes(model: VAE, x: Tensor, y: Tensor | None = None) -> Tensor:
    """The class each input's style is inferred with (N,), on the model's device: its label
    where known (y >= 0), else M2's most probable class under q(y|x).

    Args:
        model: an M2, or a VAE conditioned on one-hot classes.
        x: inputs (N, *x_shape).
        y: their labels (N,), -1 where unknown; None: all unknown.
    """
    if not model.cond_dim:
        raise VaelabError("analogies need a model of the class: this run is not conditional; "
                          "train with --family m2 (semi-supervised) or --conditional")
    device = _device(model)
    if y is not None and y.dim() != 1:
        raise VaelabError("analogies need class labels (N,); this run is conditioned on "
                          "attribute vectors")
    known = (torch.full((len(x),), -1, dtype=torch.long, device=device) if y is None
             else y.to(device).long())
    if bool((known < 0).any()):
        if not isinstance(model, M2):
            raise VaelabError("analogies: a conditional VAE infers a style from labelled "
                              "inputs only, and some of these have no label (an M2 guesses)")
        guess = model.classify(x.to(device)).logits.argmax(-1)
        known = torch.where(known >= 0, known, guess)
    if int(known.max()) >= model.cond_dim:
        raise VaelabError(f"analogies: label {int(known.max())}, but this run has classes "
                          f"0..{model.cond_dim - 1}")
    return known


@torch.no_grad()
def analogies(model: VAE, x: Tensor, y: Tensor | None = None) -> np.ndarray:
    """Each input's style decoded as every class (Kingma et al. 2014, section 4.2, fig. 1).

    The style is z = E_q[z|x, y], with y the input's label where known, else M2's guess
    (`style_classes`); then p(x|y = c, z) is decoded for every class c with that one z.

    Args:
        model: an M2, or a VAE conditioned on one-hot classes.
        x: inputs (N, *x_shape).
        y: their labels (N,), -1 where unknown; None: all unknown (M2 only).

    Returns:
        (N, K, *x_shape) numpy float32: row i is input i's style, column c decoded as class c.
    """
    k, device = model.cond_dim, _device(model)
    labels = style_classes(model, x, y)  # (N,)
    z = model.encode(x.to(device), one_hot(labels, k)).mean  # (N, D)
    zk = z[:, None].expand(len(z), k, z.shape[-1])  # (N, K, D): one style per row
    yk = torch.eye(k, device=device).expand(len(z), k, k)  # (N, K, K): class c in column c
    return model.decode(zk, yk).mean.float().cpu().numpy()


# ---------------------------------------------------------------- inpainting and denoising
def make_mask(kind: str, x_shape: Sequence[int], n: int,
              generator: torch.Generator | None = None) -> Tensor:
    """Which values are observed: bool (n, *x_shape), True = observed, False = hidden.

    kind: left | right | top | bottom (that half is hidden), center (the middle half of each
    side is hidden), random:p (each value hidden with probability p).
    """
    h, w = (x_shape[-2], x_shape[-1]) if len(x_shape) >= 2 else (1, x_shape[-1])
    hidden = torch.zeros(h, w, dtype=torch.bool)
    if kind.startswith("random:"):
        p = _fraction(kind, "random")
        hidden = torch.rand((n, *x_shape), generator=generator) < p
        return ~hidden
    if kind == "left":
        hidden[:, : w // 2] = True
    elif kind == "right":
        hidden[:, w // 2:] = True
    elif kind == "top":
        hidden[: h // 2] = True
    elif kind == "bottom":
        hidden[h // 2:] = True
    elif kind == "center":
        hidden[h // 4: h - h // 4, w // 4: w - w // 4] = True
    else:
        raise VaelabError(f"--mask must be left, right, top, bottom, center or random:P, "
                          f"not '{kind}'")
    observed = ~hidden  # (H, W) broadcasts over channels; a flat (D,) input is one row
    return (observed[0] if len(x_shape) == 1 else observed).expand(n, *x_shape).clone()


@torch.no_grad()
def inpaint(model: VAE, x: Tensor, observed: Tensor, steps: int = INPAINT_STEPS,
            init: Tensor | None = None, y: Tensor | None = None) -> np.ndarray:
    """Fills hidden values by iterating encode/decode with the observed values clamped.

    x_0 = x with hidden values set to `init`; x_{t+1} = where(observed, x, E[p(x | E_q[z|x_t])]).
    This is the deterministic (mean-field) version of the pseudo-Gibbs sampler of Rezende,
    Mohamed & Wierstra (2014), section 5.3: repeated projection onto what the model can
    reconstruct. On digits the error on hidden pixels drops most in the first 3-5 rounds;
    later rounds drift towards the blurrier images the model prefers, hence the default of 5.

    Args:
        x: inputs (N, *x_shape); only the observed values are read.
        observed: bool (N, *x_shape), True where x is known.
        steps: encode/decode rounds.
        init: the first guess for hidden values, (*x_shape) or (N, *x_shape); default 0.5.
        y: labels (N,) for a conditional model.

    Returns:
        (N, *x_shape): observed values exactly as in x, hidden values filled in.
    """
    dev = _device(model)
    x, observed = x.to(dev), observed.to(dev)
    fill = torch.full_like(x, 0.5) if init is None else init.to(dev).expand_as(x)
    xt = torch.where(observed, x, fill)
    cond = _cond(model, y)
    for _ in range(steps):
        xt = torch.where(observed, x, model.reconstruct(xt, cond))
    return xt.float().cpu().numpy()


def corrupt(x: Tensor, noise: str, generator: torch.Generator | None = None,
            clip: bool = True) -> Tensor:
    """x with noise added: gaussian:s (x + s * eps) or saltpepper:p (a fraction p set to 0 or 1).

    clip=True keeps the result in [0, 1] (for image data).
    """
    if noise.startswith("gaussian:"):
        s = _fraction(noise, "gaussian", upper=math.inf)
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        noisy = x + s * eps.to(x.device)
    elif noise.startswith("saltpepper:"):
        p = _fraction(noise, "saltpepper")
        u = torch.rand((2, *x.shape), generator=generator, dtype=x.dtype).to(x.device)
        noisy = torch.where(u[0] < p, (u[1] < 0.5).to(x.dtype), x)
    else:
        raise VaelabError(f"--noise must be gaussian:S or saltpepper:P, not '{noise}'")
    return noisy.clamp(0, 1) if clip else noisy


@torch.no_grad()
def denoise(model: VAE, noisy: Tensor, y: Tensor | None = None) -> np.ndarray:
    """The reconstruction of corrupted inputs (N, *x_shape): decoded from E_q[z|noisy]."""
    return reconstruct(model, noisy, y)[1]


def restoration_errors(restored: np.ndarray, original: np.ndarray, where: np.ndarray,
                       baseline: np.ndarray) -> dict[str, float]:
    """Mean squared error over the values `where` is True, for restored vs a baseline guess.

    Args:
        restored, original: (N, *x_shape).
        where: bool (N, *x_shape): the values to score (hidden pixels, or all of them).
        baseline: (*x_shape) or (N, *x_shape): the trivial guess, e.g. the training mean image.
    """
    where = np.broadcast_to(np.asarray(where, dtype=bool), original.shape)
    base = np.broadcast_to(baseline, original.shape)
    if not where.any():
        raise VaelabError("nothing to score: the mask hides no values")
    return {"mse": float(((restored - original)[where] ** 2).mean()),
            "baseline_mse": float(((base - original)[where] ** 2).mean()),
            "values": int(where.sum())}


def _fraction(text: str, name: str, upper: float = 1.0) -> float:
    try:
        p = float(text.split(":", 1)[1])
    except ValueError:
        p = -1.0
    if not 0 <= p <= upper:
        bound = "between 0 and 1" if upper == 1 else ">= 0"
        raise VaelabError(f"'{text}': expected {name}:NUMBER with a number {bound}")
    return p


# ---------------------------------------------------------------- inputs
def read_images(paths: Sequence[str | Path], x_shape: Sequence[int]) -> Tensor:
    """Image files as model inputs (N, *x_shape) in [0, 1], converted and resized to fit.

    A (C, H, W) model gets grey (C = 1) or RGB (C = 3) images of H x W; a flat (D,) model with
    D a square gets sqrt(D) x sqrt(D) grey images, flattened.
    """
    from PIL import Image, UnidentifiedImageError

    if len(x_shape) == 3 and x_shape[0] in (1, 3):
        c, h, w = x_shape
    elif len(x_shape) == 1 and math.isqrt(x_shape[0]) ** 2 == x_shape[0]:
        c, h, w = 1, math.isqrt(x_shape[0]), math.isqrt(x_shape[0])
    else:
        raise VaelabError(f"this model's inputs (shape {list(x_shape)}) are not images; "
                          f"give test-set indices instead of image files")
    out = []
    for path in paths:
        try:
            img: Image.Image = Image.open(path)
            img.load()
        except (OSError, UnidentifiedImageError) as e:
            raise VaelabError(f"{path}: cannot read this image ({e})") from None
        img = img.convert("L" if c == 1 else "RGB")
        if img.size != (w, h):  # PIL sizes are (width, height)
            img = img.resize((w, h), Image.Resampling.LANCZOS)
        a = np.asarray(img, dtype=np.float32) / 255.0
        a = a[None] if c == 1 else a.transpose(2, 0, 1)
        out.append(torch.from_numpy(np.ascontiguousarray(a)).reshape(*x_shape))
    return torch.stack(out)


def select_inputs(specs: Sequence[str], split: Split, x_shape: Sequence[int],
                  what: str = "--from") -> tuple[Tensor, Tensor | None]:
    """Inputs named by test-set indices ("12") or image file paths: (x (N, *x_shape), y or None).

    Labels are returned only when every input is an index and the split has labels.
    """
    xs: list[Tensor] = []
    ys: list[Tensor | None] = []
    for spec in specs:
        if spec.lstrip("-").isdigit():
            i = int(spec)
            if not 0 <= i < len(split):
                raise VaelabError(f"{what} {i}: index out of range; the test set has "
                                  f"{len(split)} examples (0..{len(split) - 1})")
            xs.append(split.x[i])
            ys.append(None if split.y is None else split.y[i])
        elif Path(spec).is_file():
            xs.append(read_images([spec], x_shape)[0])
            ys.append(None)
        else:
            raise VaelabError(f"{what} {spec}: not a test-set index nor an image file")
    labels = [v for v in ys if v is not None]
    y = torch.stack(labels) if len(labels) == len(ys) else None
    return torch.stack(xs), y
