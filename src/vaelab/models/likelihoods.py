"""Likelihoods p(x|z): turn the decoder's raw output into a distribution over x.

The decoder produces `params` of shape (..., P, *x_shape), P parameters per element of x; a
likelihood names P and builds an `Independent` distribution whose event is the whole of x.
Every likelihood declares its `support`, which evaluation reads to name its numbers honestly:

    "binary"  a probability mass on {0, 1}^D          (Bernoulli)
    "unit"    a density on [0, 1]^D                   (continuous Bernoulli)
    "real"    a density on R^D                        (the Gaussians)

Papers:
    continuous Bernoulli: Loaiza-Ganem & Cunningham (2019), https://arxiv.org/abs/1907.06845
    learned Gaussian scale: Rybkin, Daniilidis & Levine (2021), "Simple and Effective VAE
        Training with Calibrated Decoders" (sigma-VAE), https://arxiv.org/abs/2006.13202
    softplus bounds on a learned log-variance: Chua, Calandra, McAllister & Levine (2018),
        "Deep RL in a Handful of Trials" (PETS), https://arxiv.org/abs/1805.12114
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, constraints

from vaelab.errors import VaelabError

Support = Literal["binary", "unit", "real"]


# ------------------------------------------------------------------------- continuous Bernoulli
# p(x|lam) = exp(lam * x) / Z(lam) on [0, 1], with Z(lam) = int_0^1 e^(lam x) dx = (e^lam - 1) / lam
# (Z(0) = 1): the density of Loaiza-Ganem & Cunningham (2019), eq. (2)-(3), written with its
# natural parameter, the logit lam. Near lam = 0 the closed forms are 0/0, so both the normaliser
# and the mean switch to their Taylor series there; each branch only ever sees arguments where it
# is finite ("safe where"), so neither can send a NaN or inf gradient through torch.where.
TAYLOR_BELOW = 0.25  # |lam| under which the series is used: they err by < 1e-10 there


def _branches(lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(small, lam for the series: 0 where not small, lam for the closed form: 1 where small)."""
    small = lam.abs() < TAYLOR_BELOW
    return small, torch.where(small, lam, 0.0), torch.where(small, 1.0, lam)


def _log_norm(lam: Tensor) -> Tensor:
    """log Z(lam), exact for every finite lam: never forms e^lam, only e^-|lam|."""
    small, s, b = _branches(lam)
    series = s / 2 + s**2 / 24 - s**4 / 2880 + s**6 / 181440  # lam/2 + log(sinh(lam/2) / (lam/2))
    a = b.abs()
    closed = b.clamp(min=0) + torch.log(-torch.expm1(-a)) - torch.log(a)
    return torch.where(small, series, closed)


def _mean(lam: Tensor) -> Tensor:
    """E[x] = d log Z / d lam = 1 / (1 - e^-lam) - 1 / lam, written with tanh to stay bounded."""
    small, s, b = _branches(lam)
    series = 0.5 + s / 12 - s**3 / 720 + s**5 / 30240  # its derivative
    closed = 0.5 + 0.5 / torch.tanh(b / 2) - 1 / b
    return torch.where(small, series, closed)


def _icdf(u: Tensor, lam: Tensor) -> Tensor:
    """The x with P(X <= x) = u: log1p(u (e^lam - 1)) / lam, taken on the side lam <= 0.

    X ~ CB(lam) is 1 - X' with X' ~ CB(-lam), so lam > 0 uses the lam < 0 form at 1 - u, where
    expm1 never overflows; below |lam| = 1e-4 the first-order series u + u (1 - u) lam / 2.
    """
    flip, tiny = lam > 0, lam.abs() < 1e-4
    v, a = torch.where(flip, 1 - u, u), torch.where(tiny, -1.0, -lam.abs())
    x = torch.log1p(v * torch.expm1(a)) / a
    return torch.where(tiny, u + u * (1 - u) * lam / 2, torch.where(flip, 1 - x, x))


class StableContinuousBernoulli(Distribution):
    """The continuous Bernoulli on [0, 1], with logits, exact for every logit.

    torch's `ContinuousBernoulli` clamps its probabilities, so in float32 its log-normaliser is
    wrong beyond |logit| ~ 15 (by 0.01 nats per element at 15, 0.6 at 30, 1.1 at 50); this computes
    log p(x) = lam * x - log Z(lam) with no clamping, in float32 or float64. It gives log_prob,
    mean and (r)sample (by the inverse CDF); vaelab needs no more.

    Args:
        logits: lam, any real values; the batch shape is logits.shape, the event is a scalar.
        validate_args: as in torch.distributions.
    """

    arg_constraints = {"logits": constraints.real}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, logits: Tensor, validate_args: bool | None = None) -> None:
        self.logits = torch.as_tensor(logits)
        super().__init__(self.logits.shape, validate_args=validate_args)

    def expand(self, batch_shape: torch.Size | list[int] | tuple[int, ...],
               _instance: Distribution | None = None) -> Distribution:
        new = self._get_checked_instance(StableContinuousBernoulli, _instance)
        new.logits = self.logits.expand(batch_shape)
        super(StableContinuousBernoulli, new).__init__(torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> Tensor:
        return _mean(self.logits)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return self.logits * value - _log_norm(self.logits)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = torch.Size()  # noqa: B008
                ) -> Tensor:
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
        return _icdf(u, self.logits.expand(shape))


# ------------------------------------------------------------------------- learned Gaussian scale
# A learned log standard deviation is squeezed smoothly into (LOG_SCALE_MIN, LOG_SCALE_MAX):
# close to the identity well inside, and, unlike a clamp, with a gradient that never becomes
# exactly zero (it decays like e^-distance outside, so it underflows ~87 past a bound in float32).
# The softplus bounds are those of Chua et al. (2018, PETS), max - softplus(max - s) then
# min + softplus(s - min), on a log-variance; sigma-VAE (Rybkin et al. 2021) uses only the lower
# one, log sigma <- -6 + softplus(log sigma + 6): `softclip(log_sigma, -6)` in their reference code
# (github.com/orybkin/sigma-vae-pytorch, model.py). We take their lower bound, sigma >= e^-6 ~
# 2.5e-3. The upper bound only keeps sigma^2 finite: vaelab does not standardise real-valued
# files, so it sits far above any sensible scale (e^10 ~ 2.2e4) rather than at e^3 ~ 20.
LOG_SCALE_MIN, LOG_SCALE_MAX = -6.0, 10.0


def _soft_top(lo: float, hi: float) -> float:
    """The inner upper bound that makes the outer softplus end exactly at hi."""
    return lo + math.log(math.expm1(hi - lo))


def soft_clip(s: Tensor, lo: float = LOG_SCALE_MIN, hi: float = LOG_SCALE_MAX) -> Tensor:
    """Smoothly map any real s into [lo, hi]: ~s well inside, strictly increasing everywhere.

    lo + softplus(t - lo) with t = top - softplus(top - s), where top = lo + log(e^(hi-lo) - 1)
    so that s -> +inf lands on hi exactly (PETS's bounds would overshoot hi by log1p(e^(lo-hi))).
    """
    top = _soft_top(lo, hi)
    return lo + F.softplus(top - F.softplus(top - s) - lo)


def soft_clip_inverse(y: float, lo: float = LOG_SCALE_MIN, hi: float = LOG_SCALE_MAX) -> float:
    """The s with soft_clip(s) = y, for lo < y < hi (a float: used to initialise parameters)."""
    top = _soft_top(lo, hi)
    t = lo + math.log(math.expm1(y - lo))
    return top - math.log(math.expm1(top - t))


# ------------------------------------------------------------------------- the likelihoods
class Likelihood(nn.Module):
    """Base class: `num_params` decoder outputs per element of x -> a distribution over x.

    Args:
        event_dims: len(x_shape), the trailing dimensions that form one x.
        obs_scale: the Gaussians' standard deviation (fixed, or the learned one's start);
            the other likelihoods ignore it.
    """

    num_params: int = 1
    support: Support = "real"

    def __init__(self, event_dims: int, obs_scale: float = 0.1) -> None:
        super().__init__()
        self.event_dims = event_dims  # len(x_shape)

    def forward(self, params: Tensor) -> Distribution:  # params (..., P, *x_shape)
        raise NotImplementedError

    def _split(self, params: Tensor) -> tuple[Tensor, ...]:
        params = params.to(torch.promote_types(params.dtype, torch.float32))  # log-probs in >= fp32
        return params.unbind(dim=-self.event_dims - 1)

    def _event(self, dist: Distribution) -> Distribution:
        return Independent(dist, self.event_dims)  # batch (...), event x_shape


class BernoulliLikelihood(Likelihood):
    """Bernoulli with logits: log p(x|z) is minus the binary cross-entropy, computed stably.

    Grey-level data in [0, 1] is accepted as the "probability" targets of the classic VAE papers
    (then log p(x|z) is a cross-entropy, not a log-density).
    """

    support = "binary"

    def forward(self, params: Tensor) -> Distribution:
        (logits,) = self._split(params)
        return self._event(Bernoulli(logits=logits, validate_args=False))


class ContinuousBernoulliLikelihood(Likelihood):
    """The properly normalised [0, 1] likelihood of Loaiza-Ganem & Cunningham (2019)."""

    support = "unit"

    def forward(self, params: Tensor) -> Distribution:
        (logits,) = self._split(params)
        return self._event(StableContinuousBernoulli(logits, validate_args=False))


class GaussianLikelihood(Likelihood):
    """Gaussian with a fixed standard deviation `obs_scale` (the decoder gives only the mean)."""

    def __init__(self, event_dims: int, obs_scale: float = 0.1) -> None:
        super().__init__(event_dims)
        self.scale = obs_scale

    def forward(self, params: Tensor) -> Distribution:
        (loc,) = self._split(params)
        return self._event(Normal(loc, torch.full_like(loc, self.scale)))


class LearnedGaussianLikelihood(Likelihood):
    """Gaussian whose per-element log standard deviation is a second decoder output, soft-clipped."""

    num_params = 2

    def forward(self, params: Tensor) -> Distribution:
        loc, log_scale = self._split(params)
        return self._event(Normal(loc, soft_clip(log_scale).exp()))


class GlobalGaussianLikelihood(Likelihood):
    """Gaussian with one learned standard deviation shared by every element of x (sigma-VAE).

    The parameter `log_scale` is the raw value before `soft_clip`; it starts where the scale is
    exactly `obs_scale`, which must lie in (e^LOG_SCALE_MIN, e^LOG_SCALE_MAX).
    """

    def __init__(self, event_dims: int, obs_scale: float = 0.1) -> None:
        super().__init__(event_dims)
        lo, hi = math.exp(LOG_SCALE_MIN), math.exp(LOG_SCALE_MAX)
        if not lo < obs_scale < hi:
            raise VaelabError(f"model.obs_scale {obs_scale:g}: the gaussian-global likelihood learns "
                              f"a scale in ({lo:.3g}, {hi:.3g}) and starts at obs_scale; choose one "
                              f"inside")
        self.log_scale = nn.Parameter(torch.tensor(soft_clip_inverse(math.log(obs_scale))))

    def forward(self, params: Tensor) -> Distribution:
        (loc,) = self._split(params)
        scale = soft_clip(self.log_scale).exp().to(loc.dtype)
        return self._event(Normal(loc, scale.expand_as(loc)))


# ------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class LikelihoodEntry:
    """One row of LIKELIHOODS: the class and a one-line description; support and num_params are
    read from the class, so they have one source."""

    cls: type[Likelihood]
    description: str

    @property
    def support(self) -> Support:
        return self.cls.support

    @property
    def num_params(self) -> int:
        return self.cls.num_params


# The keys are vaelab.config.LIKELIHOOD_NAMES, in the same order (a test checks).
LIKELIHOODS: dict[str, LikelihoodEntry] = {
    "bernoulli": LikelihoodEntry(
        BernoulliLikelihood, "binary or [0, 1] data (the classic MNIST choice)"),
    "continuous-bernoulli": LikelihoodEntry(
        ContinuousBernoulliLikelihood, "[0, 1] grey data, properly normalised"),
    "gaussian": LikelihoodEntry(
        GaussianLikelihood, "real or [0, 1] data, fixed standard deviation model.obs_scale"),
    "gaussian-learned": LikelihoodEntry(
        LearnedGaussianLikelihood, "Gaussian with a learned standard deviation per element"),
    "gaussian-global": LikelihoodEntry(
        GlobalGaussianLikelihood, "Gaussian with one learned standard deviation, from obs_scale"),
}


def build_likelihood(name: str, event_dims: int, obs_scale: float = 0.1) -> Likelihood:
    """The likelihood `name` (a key of LIKELIHOODS) for x with `event_dims` dimensions."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood '{name}'; choose from {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[name].cls(event_dims, obs_scale)
