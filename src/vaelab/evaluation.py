"""Evaluation: test ELBO, an importance-sampled (IS) estimate, KL per dimension, active units.

Every number is named for what it is. `describe` decides that once, from the likelihood's
support, the data's value range and quantisation levels, the condition and the objective:

| likelihood on data                   | IS estimate key (nats)     | and                         |
|--------------------------------------|----------------------------|-----------------------------|
| Bernoulli on binary data             | log_likelihood             | nll, bits_per_dim           |
| Bernoulli on grey levels in [0, 1]   | cross_entropy (positive)   | a note: not a likelihood    |
| a density on quantised data (L lev.) | log_density_dequantised    | bits_per_dim_dequantised    |
| a density on continuous data         | log_density                |                             |

A conditional model (cond_dim > 0) scores log p(x|y): each of those keys ends in `_given_y`
(`log_likelihood_given_y`, `nll_given_y`, ...). M2 (Kingma et al. 2014) scores log p(x) with its
class y summed out, under the plain keys. Every estimate `KEY` comes with `KEY_sem`, the
standard error of the mean over the examples (sample standard deviation / sqrt(n)).

Keys of every result: n, quantity (the `Quantity` below as a dict), latent_dim, reconstruction
(the mean log p(x|z) term as the likelihood computes it: minus a cross-entropy for a Bernoulli on
grey levels), active_units (Burda et al. 2016, section 5.2), posterior_mean_variance, seconds.
Density models add elbo, kl and kl_per_dim (on x as trained, never dequantised), k with the IS
estimate, and iwae_bound with iwae_k when asked for (the IWAE-k bound, Burda et al. 2016, eq. 8).
A plain autoencoder (objective "ae") is no density model: its reconstruction is log p(x|z) at
z = E_q[z], and it gets no ELBO, KL or IS estimate. M2 adds its classifier's error on a labelled
split: SPLIT_error (a fraction: `test_error` on the test set), SPLIT_error_sem and `confusion`
(K, K) (`classification_error`); its ELBO sums y out, its KL is KL(q(y,z|x) || p(y,z)).

The IS estimate (Burda et al. 2016, eq. 8 with q as the proposal)
    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k,  z_k ~ q(z|x)
is computed in chunks of samples with a running logsumexp, so memory stays bounded for any k.
For M2 the sum over the K classes is exact: log p(x) = logsumexp_y [log p(x|y) - log K] with
p(y) = 1/K and each p(x|y) importance-sampled with k samples from q(z|x,y) (K times the cost).
Small chunks are also the fast ones on a CPU: ~2,000 decoded samples at a time keep the
decoder's activations in cache, about 2x the speed of 32,768 (benchmarks/eval_speed.py).

Dequantisation (Theis, van den Oord & Bethge 2016, "A note on the evaluation of generative
models", section 3.1): a density p scores x = k/(L-1) as v = (k + u)/L, u ~ U(0, 1)^D. Then
P(k) = integral of p over the bin of k >= exp(E_u log p(v)) / L^D, so
    bits/dim = (-log p(v) + D ln L) / (D ln 2)
bounds the bits/dim of the discrete model it defines. A density at undequantised points is no
probability (it can exceed 1), so no bits/dim is ever made from one.

Randomness: every example has its own noise streams (`ExampleNoise`), so for a given seed the
numbers do not depend on the chunk size (`budget`), the batch size or the device.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaelab.config import Config, ObjectiveConfig
from vaelab.data import BINARIZE_SEED, Data, Split, dynamic_binarize
from vaelab.errors import VaelabError
from vaelab.models import M2, VAE, Output, SemiOutput, one_hot, rsample
from vaelab.objectives import OBJECTIVES, BatchMean, active_units, elbo, kl_per_dim, log_weights, m2

SAMPLE_BUDGET = 1 << 15  # latent samples decoded at once on an accelerator: bounds memory
CPU_SAMPLE_BUDGET = 1 << 11  # the same on a CPU, where cache-sized chunks run fastest
ELBO_BATCH = 1000  # examples per batch of the one-sample ELBO pass

# Noise streams: each draws from its own generators, so one never shifts another.
ELBO_STREAM, IS_STREAM, IWAE_STREAM, DEQUANTISE_STREAM = 1, 2, 3, 4
IS_BLOCK = 128  # importance samples per generator seeding (chunks are multiples of it)

RANGES = ("binary", "unit", "real")  # binary: 0/1; unit: grey levels in [0, 1]; real
# The support of each likelihood class, until likelihoods carry `support` themselves.
SUPPORTS = {"BernoulliLikelihood": "binary", "ContinuousBernoulliLikelihood": "unit",
            "GaussianLikelihood": "real", "LearnedGaussianLikelihood": "real",
            "GlobalGaussianLikelihood": "real"}
NOTES = {  # one line for the cases whose numbers are not a log-likelihood
    "cross_entropy": "a Bernoulli scoring grey levels gives a cross-entropy, not a likelihood; "
                     "train with --binarize dynamic for log p(x) and bits/dim",
    "continuous": "a log-density, not a log-probability: no bits/dim without the data's "
                  "quantisation levels",
    "ae": "a plain autoencoder is not a density model: no ELBO or log p(x), reconstruction only",
}


def sample_budget(device: torch.device) -> int:
    """How many latent samples to decode at once on `device` (a speed choice, not a result)."""
    return CPU_SAMPLE_BUDGET if device.type == "cpu" else SAMPLE_BUDGET


def likelihood_support(model: VAE) -> str:
    """What p(x|z) is a distribution over: "binary" ({0, 1}), "unit" ([0, 1]) or "real"."""
    likelihood = model.likelihood
    support = getattr(likelihood, "support", None) or SUPPORTS.get(type(likelihood).__name__)
    if support not in RANGES:
        raise VaelabError(f"evaluate: the likelihood {type(likelihood).__name__} names no "
                          f"support; give it support = one of {', '.join(RANGES)}")
    return support


@dataclass(frozen=True)
class Quantity:
    """What the numbers of one evaluation are; made by `describe`, stored in the result.

    kind: what log p(x|z) of this likelihood on this data is: "log_likelihood" (a probability),
    "cross_entropy" (minus a Bernoulli cross-entropy of grey levels) or "log_density".
    """

    support: str  # the likelihood's: binary | unit | real
    value_range: str  # the data's: binary | unit | real
    levels: int | None  # the data's quantisation levels L (None: continuous or unknown)
    conditional: bool  # log p(x|y), not log p(x)
    objective: str
    kind: str
    note: str | None
    sums_y: bool = False  # M2: the class y is a latent, summed out of log p(x)

    @property
    def density_model(self) -> bool:
        return not OBJECTIVES[self.objective].deterministic  # a plain autoencoder is not

    @property
    def dequantise(self) -> int | None:
        """L when a density scores dequantised data (k + u)/L, else None."""
        return self.levels if self.kind == "log_density" else None

    @property
    def given(self) -> str:
        return "_given_y" if self.conditional else ""

    @property
    def estimate(self) -> str | None:
        """The JSON key of the IS estimate (None: no density model)."""
        if not self.density_model:
            return None
        return self.kind + ("_dequantised" if self.dequantise else "") + self.given

    @property
    def nll(self) -> str | None:
        return "nll" + self.given if self.density_model and self.kind == "log_likelihood" else None

    @property
    def bits_per_dim(self) -> str | None:
        if not self.density_model or self.kind == "cross_entropy":
            return None
        if self.kind == "log_likelihood":
            return "bits_per_dim" + self.given
        return "bits_per_dim_dequantised" + self.given if self.dequantise else None


def describe(support: str, value_range: str, levels: int | None = None, cond_dim: int = 0,
             objective: str = "elbo") -> Quantity:
    """The `Quantity` a likelihood of `support` gives on data of `value_range` and `levels`.

    Args:
        support: the likelihood's support, binary | unit | real (`likelihood_support`).
        value_range: the scored data's, binary (0/1) | unit (grey levels in [0, 1]) | real.
        levels: the data's quantisation levels L, its values k/(L-1) (2 for binary, 256 for
            8-bit images, 17 for sklearn digits); None: continuous or unknown.
        cond_dim: the condition size of a conditional model (0: unconditional).
        objective: the run's objective name; "ae" is no density model; a semi-supervised one
            (M2) sums its cond_dim classes out, so its numbers are about x alone.
    """
    for name, value in (("likelihood support", support), ("value_range", value_range)):
        if value not in RANGES:
            raise VaelabError(f"evaluate: {name} '{value}' is not one of {', '.join(RANGES)}")
    if value_range == "binary":
        levels = levels or 2
    if levels is not None and (levels < 2 or value_range == "real"
                               or (value_range == "binary" and levels != 2)):
        raise VaelabError(f"evaluate: levels {levels} does not fit {value_range} data; use 2 "
                          f"for binary data, L >= 2 for grey levels k/(L-1), none for real data")
    if value_range == "real" and support != "real":
        raise VaelabError(f"evaluate: a likelihood on {support} values cannot score real-valued "
                          f"data; train with --likelihood gaussian")
    if support == "binary":
        kind = "log_likelihood" if value_range == "binary" else "cross_entropy"
    else:
        kind = "log_density"
    continuous = kind == "log_density" and levels is None
    deterministic, sums_y = OBJECTIVES[objective].deterministic, OBJECTIVES[objective].semi_supervised
    note = NOTES.get("ae" if deterministic else "continuous" if continuous else kind)
    return Quantity(support, value_range, levels, cond_dim > 0 and not sums_y, objective, kind,
                    note, sums_y)


def value_range_of(x: Tensor) -> str:
    """binary if every value is 0 or 1, unit if all lie in [0, 1], else real."""
    lo, hi = (float(v) for v in x.aminmax())
    if lo < 0 or hi > 1:
        return "real"
    return "binary" if bool(((x == 0) | (x == 1)).all()) else "unit"


def _check_values(q: Quantity, x: Tensor) -> None:
    """The data is what the caller says: within its value range, on its quantisation grid."""
    found = value_range_of(x)
    if RANGES.index(found) > RANGES.index(q.value_range):
        raise VaelabError(f"evaluate: value_range '{q.value_range}', but the data holds "
                          f"{found} values; pass value_range='{found}'")
    if q.dequantise:
        k = x * (q.dequantise - 1)
        if float((k - k.round()).abs().max()) > 1e-3:
            raise VaelabError(f"evaluate: levels {q.dequantise}, but the data's values are not "
                              f"all k/{q.dequantise - 1}; pass the right levels, or None")


def stream_seed(seed: int, stream: int, index: int, block: int) -> int:
    """A 64-bit generator seed for (seed, stream, example index, block), by SplitMix64
    (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators")."""
    mask = (1 << 64) - 1
    h = 0
    for part in (seed, stream, index, block):
        h = (h ^ part) + 0x9E3779B97F4A7C15 & mask
        h = (h ^ h >> 30) * 0xBF58476D1CE4E5B9 & mask
        h = (h ^ h >> 27) * 0x94D049BB133111EB & mask
        h ^= h >> 31
    return h


@dataclass(frozen=True)
class ExampleNoise:
    """Noise for a batch of examples, each from its own stream, drawn on the CPU.

    Example i's draws are rows of fixed-size blocks: block j is torch.randn(block, *shape) from
    a generator seeded with stream_seed(seed, stream, i, j). The blocks have a fixed size
    because torch's CPU randn is not consistent under concatenation (randn(n)[:m] differs from
    randn(m)), so the values depend only on (seed, stream, i, row), not on how they are asked for.
    """

    seed: int
    stream: int
    index: list[int]  # (B,) the examples' positions in their split

    def normal(self, start: int, count: int, shape: tuple[int, ...], block: int,
               device: torch.device) -> Tensor:
        """Rows start .. start+count-1 of every example's standard normal stream, (count, B, *shape)."""
        gen = torch.Generator()
        first, stop = start // block, -(-(start + count) // block)
        offset = start - first * block
        out = torch.empty(count, len(self.index), *shape)
        for b, i in enumerate(self.index):
            draws = []
            for j in range(first, stop):
                gen.manual_seed(stream_seed(self.seed, self.stream, i, j))
                draws.append(torch.randn(block, *shape, generator=gen))
            out[:, b] = torch.cat(draws)[offset:offset + count]
        return out.to(device)

    def uniform(self, shape: tuple[int, ...], device: torch.device) -> Tensor:
        """One U(0, 1) draw of `shape` per example, (B, *shape)."""
        gen = torch.Generator()
        out = torch.empty(len(self.index), *shape)
        for b, i in enumerate(self.index):
            out[b] = torch.rand(shape, generator=gen.manual_seed(stream_seed(
                self.seed, self.stream, i, 0)))
        return out.to(device)


def dequantise(x: Tensor, levels: int, noise: ExampleNoise) -> Tensor:
    """x = k/(L-1) as (k + u)/L, u ~ U(0, 1) (Theis et al. 2016, section 3.1), shape of x."""
    k = (x * (levels - 1)).round()
    return (k + noise.uniform(tuple(x.shape[1:]), x.device)) / levels


@torch.no_grad()
def log_likelihood(model: VAE, x: Tensor, y: Tensor | None = None, k: int = 1000,
                   generator: torch.Generator | None = None, budget: int | None = None,
                   noise: ExampleNoise | None = None) -> Tensor:
    """Importance-sampled log p(x) per example (B,), with k samples from q(z|x) each.

    With k = 1 it is an unbiased estimate of the ELBO; in expectation it is the IWAE-k bound,
    which rises with k towards log p(x) (Burda et al. 2016, theorem 1).

    For an M2 with y None the class is summed out exactly (`log_marginal`): log p(x).

    Args:
        model: the VAE (in eval mode).
        x: inputs (B, *x_shape); y: their conditions (B, Y) for a conditional model (for an
            M2: one-hot classes give log p(x|y), None gives log p(x)).
        k: samples per example (per class for an M2 with y summed out).
        generator: the source of the samples when no `noise` is given; the draws then depend
            on the chunking.
        budget: caps the samples decoded at once (default: `sample_budget(x.device)`); a speed
            setting: with `noise`, the estimate does not depend on it.
        noise: per-example noise streams (`ExampleNoise`), which make the estimate independent
            of the budget and of how the examples are batched.
    """
    if isinstance(model, M2) and y is None:
        return log_marginal(model, x, k, generator, budget, noise)
    budget = budget or sample_budget(x.device)
    qz = model.encode(x, y)
    pz = model.prior(qz.mean)
    chunk = max(1, min(k, budget // max(len(x), 1)))
    if noise is not None and IS_BLOCK < chunk < k:
        chunk -= chunk % IS_BLOCK  # chunks of whole blocks: no block is drawn twice
    total = torch.full((len(x),), -math.inf, device=x.device)
    for start in range(0, k, chunk):
        s = min(chunk, k - start)
        eps = None if noise is None else noise.normal(start, s, (model.latent_dim,), IS_BLOCK,
                                                      x.device)
        z = rsample(qz, s, generator, eps)  # (s, B, D)
        logw = log_weights(Output(qz=qz, pz=pz, px=model.decode(z, y), z=z), x)  # (s, B)
        total = torch.logaddexp(total, torch.logsumexp(logw, 0))
    return total - math.log(k)


@torch.no_grad()
def log_marginal(model: M2, x: Tensor, k: int = 1000, generator: torch.Generator | None = None,
                 budget: int | None = None, noise: ExampleNoise | None = None) -> Tensor:
    """log p(x) of an M2 per example (B,), its class y summed out exactly:
        log p(x) = logsumexp_y [log p(x|y) + log p(y)],  p(y) = 1/K
    (Kingma et al. 2014, section 3.1.2), each p(x|y) importance-sampled with k samples from
    q(z|x,y) in one batch of K * B class-major rows; an example's classes share its noise
    stream. The sum over y is exact, so even k = 1 is, in expectation, at least the ELBO with
    y summed out (Jensen's inequality over q(y|x)). Arguments as for `log_likelihood`.
    """
    classes, b = model.cond_dim, len(x)
    xk = x.repeat(classes, *[1] * (x.dim() - 1))  # (K * B, *x_shape): row c * B + i is x_i, y = c
    yk = one_hot(torch.arange(classes, device=x.device).repeat_interleave(b), classes)
    noise = None if noise is None else dataclasses.replace(noise, index=noise.index * classes)
    logp = log_likelihood(model, xk, yk, k, generator, budget, noise)  # (K * B,) log p(x|y)
    return torch.logsumexp(logp.view(classes, b), 0) - math.log(classes)


@torch.no_grad()
def classification_error(model: M2, split: Split,
                         batch_size: int = ELBO_BATCH) -> tuple[float, float, Tensor]:
    """How often M2's classifier q(y|x) is wrong on a labelled split: its most probable class
    against the true one (the test error of Kingma et al. 2014, section 4.1, table 1).

    Returns:
        error: e, the fraction misclassified, in [0, 1].
        sem: its standard error sqrt(e (1 - e) / n).
        confusion: counts (K, K), row = true class, column = predicted class; it sums to n.
    """
    k = model.cond_dim
    if split.y is None or split.y.dim() != 1 or not len(split):
        raise VaelabError("classification error: the split has no class labels to score "
                          "q(y|x) against")
    y = split.y.long()
    if int(y.min()) < 0 or int(y.max()) >= k:
        raise VaelabError(f"classification error: the labels run from {int(y.min())} to "
                          f"{int(y.max())}; every one must be known, a class 0..{k - 1}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predicted = torch.cat([model.classify(split.x[i:i + batch_size].to(device)).logits
                           .argmax(-1).cpu() for i in range(0, len(y), batch_size)])  # (N,)
    model.train(was_training)
    confusion = torch.bincount(y * k + predicted, minlength=k * k).view(k, k)
    error = 1 - confusion.trace().item() / len(y)
    return error, math.sqrt(error * (1 - error) / len(y)), confusion


@torch.no_grad()
def _per_example(out: Output, values: Tensor) -> Tensor:
    """Per-example values (B, ...): an M2's rows (R, ...), one per class of an unlabelled
    example, averaged under q(y|x); anything else as it is."""
    if not isinstance(out, SemiOutput):
        return values
    probs = out.qy.probs.T  # (K, B)
    return (out.grid(values) * probs.view(*probs.shape, *[1] * (values.dim() - 1))).sum(0)


def elbo_metrics(model: VAE, split: Split, *, seed: int, cond_dim: int, objective: str = "elbo",
                 batch_size: int = ELBO_BATCH) -> dict[str, Any]:
    """Mean ELBO, reconstruction, KL, KL per dimension and active units on a split.

    One z per example from its own noise stream (`ExampleNoise`), so the numbers depend on
    the seed only. For a plain autoencoder (objective "ae") z = E_q[z] and only the
    reconstruction and the active units are returned. The model's train/eval mode is kept.

    Returns:
        elbo, reconstruction, kl (means over the examples, nats), kl_per_dim (D,),
        active_units (Burda et al. 2016, section 5.2), posterior_mean_variance (D,).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    deterministic = OBJECTIVES[objective].deterministic
    bound: list[Tensor] = []
    recon: list[Tensor] = []
    kl: list[Tensor] = []
    kl_dims: list[Tensor] = []
    locs: list[Tensor] = []
    for i in range(0, len(split), batch_size):
        x = split.x[i:i + batch_size].to(device)
        y = None if split.y is None else one_hot(split.y[i:i + batch_size].to(device), cond_dim)
        noise = ExampleNoise(seed, ELBO_STREAM, list(range(i, i + len(x))))
        eps = None if deterministic else noise.normal(0, 1, (model.latent_dim,), 1, device)
        if isinstance(model, M2):  # y summed out: the bound on log p(x), labels unused
            out = model(x, None, eps=eps)
            loss = m2(ObjectiveConfig(name="m2"), out, x, None, BatchMean())
        else:
            out = model(x, y, deterministic=deterministic, eps=eps)
            loss = elbo(out, x)
        assert loss.elbo is not None  # both always fill it in
        bound.append(loss.elbo)
        recon.append(loss.reconstruction)
        kl.append(loss.kl)
        kl_dims.append(_per_example(out, kl_per_dim(out.qz, out.pz).float()))
        locs.append(_per_example(out, out.qz.mean.float()))
    model.train(was_training)
    loc = torch.cat(locs)  # (N, D)
    spread = loc.var(0) if len(loc) > 1 else torch.zeros(model.latent_dim)
    result = {"elbo": torch.cat(bound).mean().item(),
              "reconstruction": torch.cat(recon).mean().item(),
              "kl": torch.cat(kl).mean().item(),
              "kl_per_dim": torch.cat(kl_dims).mean(0).tolist(),
              "active_units": int(active_units(loc).sum()),
              "posterior_mean_variance": spread.tolist()}
    if deterministic:  # an autoencoder's "posterior" variance is untrained: no ELBO, no KL
        for key in ("elbo", "kl", "kl_per_dim"):
            del result[key]
    return result


@torch.no_grad()
def evaluate(model: VAE, split: Split, *, k: int = 500, batch_size: int = 0, seed: int = 0,
             cond_dim: int = 0, objective: str | None = None, value_range: str | None = None,
             levels: int | None = None, iwae_k: int = 0, budget: int | None = None,
             progress: bool = False, name: str = "test") -> dict[str, Any]:
    """All the numbers of `vaelab evaluate` on one split, as a JSON-ready dict (keys: module
    docstring).

    Args:
        model: a trained VAE (put in eval mode here).
        split: the data, x (N, *x_shape) and labels y (N,) used only by conditional models.
        k: importance samples per example for the IS estimate; 0 skips it.
        batch_size: examples per batch (0: chosen so k samples of a batch fit the budget).
        seed: seeds the sampling; the numbers depend on it only, not on batch_size, budget
            or device.
        cond_dim: the model's condition size (conditional VAEs get one-hot labels).
        objective: the run's objective name ("ae": reconstruction only); None: "m2" for an M2,
            else "elbo".
        value_range: the data's, binary | unit | real (None: read off the values).
        levels: the data's quantisation levels L (None: continuous or unknown).
        iwae_k: also report the IWAE-k bound with this k (0: not).
        budget: latent samples decoded at once (default `sample_budget`); speed only.
        progress: show a progress bar.
        name: the split's name, which names an M2's classification error (`test_error`).
    """
    start = time.perf_counter()
    semi = isinstance(model, M2)
    objective = objective or ("m2" if semi else "elbo")
    if semi != OBJECTIVES[objective].semi_supervised:
        raise VaelabError(f"evaluate: objective '{objective}' does not fit a "
                          f"{type(model).__name__}; an M2 is scored with objective m2, only it")
    q = describe(likelihood_support(model), value_range or value_range_of(split.x), levels,
                 cond_dim, objective)
    _check_values(q, split.x)
    if q.conditional and split.y is None:
        raise VaelabError("evaluate: a conditional model needs the split's labels; it has none")
    model.eval()
    n = len(split)
    device = next(model.parameters()).device
    budget = budget or sample_budget(device)
    result: dict[str, Any] = {"n": n, "quantity": dataclasses.asdict(q),
                              "latent_dim": model.latent_dim}
    result |= elbo_metrics(model, split, seed=seed, cond_dim=cond_dim, objective=objective,
                           batch_size=batch_size or ELBO_BATCH)
    if isinstance(model, M2) and split.y is not None:  # labels score the classifier only
        error, sem, confusion = classification_error(model, split, batch_size or ELBO_BATCH)
        result |= {f"{name}_error": error, f"{name}_error_sem": sem,
                   "confusion": confusion.tolist()}
    if q.density_model and (k or iwae_k):
        per_example = max(k, iwae_k) * (model.cond_dim if semi else 1)  # M2: k per class
        batch_size = batch_size or max(1, min(n, 1000, budget // per_example))
        result |= _importance_sampled(model, split, q, k=k, iwae_k=iwae_k, seed=seed,
                                      cond_dim=cond_dim, batch_size=batch_size, budget=budget,
                                      progress=progress)
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


def _importance_sampled(model: VAE, split: Split, q: Quantity, *, k: int, iwae_k: int,
                        seed: int, cond_dim: int, batch_size: int, budget: int,
                        progress: bool) -> dict[str, Any]:
    """The IS estimate (on dequantised x where `q` says so) and the IWAE-k bound (on x)."""
    device = next(model.parameters()).device
    logp, bound = [], []
    batches = range(0, len(split), batch_size)
    for i in tqdm(batches, desc="evaluate", unit="batch", disable=not progress):
        x = split.x[i:i + batch_size].to(device)
        y = (one_hot(split.y[i:i + batch_size].to(device), cond_dim)
             if q.conditional and split.y is not None else None)  # M2: y summed out
        index = list(range(i, i + len(x)))
        if k:
            scored = (dequantise(x, q.dequantise, ExampleNoise(seed, DEQUANTISE_STREAM, index))
                      if q.dequantise else x)
            logp.append(log_likelihood(model, scored, y, k, budget=budget,
                                       noise=ExampleNoise(seed, IS_STREAM, index)))
        if iwae_k:
            bound.append(log_likelihood(model, x, y, iwae_k, budget=budget,
                                        noise=ExampleNoise(seed, IWAE_STREAM, index)))
    result: dict[str, Any] = {}
    if iwae_k:
        result |= {"iwae_k": iwae_k, "iwae_bound": torch.cat(bound).mean().item()}
    if k:
        result |= _estimate_keys(q, torch.cat(logp), k, math.prod(model.x_shape))
    return result


def _estimate_keys(q: Quantity, logp: Tensor, k: int, dims: int) -> dict[str, Any]:
    """The IS estimate under its name, its standard error of the mean, NLL and bits/dim."""
    estimate = q.estimate
    assert estimate is not None  # only density models are importance sampled
    mean = logp.mean().item()
    sem = (logp.std() / math.sqrt(len(logp))).item() if len(logp) > 1 else None
    sign = -1 if q.kind == "cross_entropy" else 1  # a cross-entropy is reported positive
    out: dict[str, Any] = {"k": k, estimate: sign * mean, f"{estimate}_sem": sem}
    if q.nll:
        out[q.nll] = -mean
    if q.bits_per_dim:  # a Bernoulli is a probability already; a density adds D ln L
        out[q.bits_per_dim] = (-mean + dims * math.log(q.dequantise or 1)) / (dims * math.log(2))
    return out


# what log p(x|z) is, per kind ({c}: ",y" for a conditional model)
RECONSTRUCTION = {"log_likelihood": "log p(x|z{c})",
                  "cross_entropy": "-cross-entropy(x, p(x|z{c}))",
                  "log_density": "log-density p(x|z{c})"}
# what the ELBO bounds, per kind ({g}: "|y" for a conditional model)
BOUNDED = {"log_likelihood": "log p(x{g})", "cross_entropy": "-cross-entropy",
           "log_density": "log-density p(x{g})"}
ERROR_SPLITS = ("test", "valid", "train")  # M2: SPLIT_error, the classifier's error there
ESTIMATED = {"log_likelihood": "log p(x{g})", "cross_entropy": "cross-entropy",
             "log_density": "log-density p(x{g})"}


def evaluate_run(model: VAE, config: Config, data: Data, split: str = "test", *, k: int = 500,
                 seed: int = 0, limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """`evaluate` on one split of a run's data, scored as the run's model sees it: the
    objective, the condition and the data's values (binary after --binarize) from its config.

    The train split of a run trained with dynamic binarization is binarized once, with the
    fixed seed that binarized valid and test.
    """
    part = getattr(data, split)
    if part is None:
        raise VaelabError(f"--split {split}: this run has no {split} split")
    if limit is not None:
        part = part.subset(torch.arange(min(limit, len(part))))
    if config.data.binarize == "dynamic" and split == "train":
        gen = torch.Generator().manual_seed(BINARIZE_SEED)
        part = Split(dynamic_binarize(part.x, gen), part.y)
    o = config.objective
    result = evaluate(model, part, k=k, seed=seed, cond_dim=config.model.cond_dim,
                      objective=o.name, value_range=data.value_range, levels=data.levels,
                      iwae_k=o.num_samples if OBJECTIVES[o.name].bound == "iwae_bound" else 0,
                      progress=progress, name=split)
    return result | {"split": split, "dataset": data.name}


def format_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value text) rows of an `evaluate` result: the one place labels are defined."""
    if "quantity" not in result:
        raise VaelabError("evaluation: this result names no quantity (an older vaelab wrote "
                          "it); run `vaelab evaluate` again")
    q = Quantity(**result["quantity"])
    c, g = (",y" if q.conditional or q.sums_y else ""), ("|y" if q.conditional else "")
    summed = ", y summed out" if q.sums_y else ""  # M2: log p(x) = log sum_y p(x, y)
    recon = RECONSTRUCTION[q.kind].format(c=c)
    rows = [("examples", f"{result['n']}")]
    for split in ERROR_SPLITS:  # M2's classifier
        if f"{split}_error" in result:
            rows.append((f"{split} error (%), argmax q(y|x)", f"{100 * result[f'{split}_error']:.2f}"
                         f" +- {100 * result[f'{split}_error_sem']:.2f} s.e.m."))
    if not q.density_model:
        rows.append((f"{recon} at z = E_q[z] (nats)", f"{result['reconstruction']:.3f}"))
    else:
        bounded = BOUNDED[q.kind].format(g=g)
        kl = "KL(q(y,z|x) || p(y,z))" if q.sums_y else f"KL(q(z|x{c}) || p(z))"
        rows += [(f"ELBO on {bounded}{summed} (nats)", f"{result['elbo']:.3f}"),
                 (f"  E_q {recon}", f"{result['reconstruction']:.3f}"),
                 (f"  {kl}", f"{result['kl']:.3f}")]
        if "iwae_bound" in result:
            rows.append((f"IWAE bound on {bounded}, k={result['iwae_k']} (nats)",
                         f"{result['iwae_bound']:.3f}"))
    if q.estimate in result:
        what = ESTIMATED[q.kind].format(g=g)
        what += f" of x dequantised to {q.dequantise} levels" if q.dequantise else ""
        sem = result[f"{q.estimate}_sem"]
        per = " per class" if q.sums_y else ""
        rows.append((f"{what}{summed}, IS k={result['k']}{per} (nats)", f"{result[q.estimate]:.3f}"
                     + ("" if sem is None else f" +- {sem:.3f} s.e.m.")))
        if q.nll:
            rows.append((f"NLL, -log p(x{g}) (nats)", f"{result[q.nll]:.3f}"))
        if q.bits_per_dim:
            deq = f", dequantised ({q.dequantise} levels)" if q.dequantise else ""
            rows.append((f"bits/dim{deq}{', given y' if q.conditional else ''}",
                         f"{result[q.bits_per_dim]:.4f}"))
    rows.append(("active units", f"{result['active_units']} / {result['latent_dim']}"))
    if "kl_per_dim" in result:
        rows.append(("KL per dim", " ".join(f"{v:.2f}" for v in result["kl_per_dim"])))
    if q.note:
        rows.append(("note", q.note))
    return rows


def format_table(result: dict[str, Any]) -> str:
    """The evaluation dict as aligned text lines for a terminal."""
    rows = format_rows(result)
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
