"""Likelihoods p(x|z): turn the decoder's raw output into a distribution over x.

The decoder produces `params` of shape (..., P, *x_shape), P parameters per element of x; a
likelihood names P and builds an `Independent` distribution whose event is the whole of x.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, ContinuousBernoulli, Distribution, Independent, Normal

LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 3.0  # keeps learned Gaussian scales in [1e-3, 20]


class Likelihood(nn.Module):
    """Base class: `num_params` decoder outputs per element of x -> a distribution over x."""

    num_params: int = 1

    def __init__(self, event_dims: int) -> None:
        super().__init__()
        self.event_dims = event_dims  # len(x_shape)

    def forward(self, params: Tensor) -> Distribution:  # params (..., P, *x_shape)
        raise NotImplementedError

    def _split(self, params: Tensor) -> tuple[Tensor, ...]:
        return params.unbind(dim=-self.event_dims - 1)

    def _event(self, dist: Distribution) -> Distribution:
        return Independent(dist, self.event_dims)  # batch (...), event x_shape


class BernoulliLikelihood(Likelihood):
    """Bernoulli with logits: log p(x|z) is minus the binary cross-entropy, computed stably.

    Grey-level data in [0, 1] is accepted as the "probability" targets of the classic VAE papers.
    """

    def forward(self, params: Tensor) -> Distribution:
        (logits,) = self._split(params)
        return self._event(Bernoulli(logits=logits, validate_args=False))


class ContinuousBernoulliLikelihood(Likelihood):
    """The properly normalised [0, 1] likelihood of Loaiza-Ganem & Cunningham (2019)."""

    def forward(self, params: Tensor) -> Distribution:
        (logits,) = self._split(params.float())  # its normaliser is unstable in half precision
        return self._event(ContinuousBernoulli(logits=logits, validate_args=False))


class GaussianLikelihood(Likelihood):
    """Gaussian with a fixed standard deviation `scale` (the decoder gives only the mean)."""

    def __init__(self, event_dims: int, scale: float) -> None:
        super().__init__(event_dims)
        self.scale = scale

    def forward(self, params: Tensor) -> Distribution:
        (loc,) = self._split(params)
        return self._event(Normal(loc, torch.full_like(loc, self.scale)))


class LearnedGaussianLikelihood(Likelihood):
    """Gaussian whose per-element log standard deviation is a second decoder output."""

    num_params = 2

    def forward(self, params: Tensor) -> Distribution:
        loc, log_scale = self._split(params)
        return self._event(Normal(loc, log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX).exp()))


class GlobalGaussianLikelihood(Likelihood):
    """Gaussian with one learned standard deviation shared by every element of x."""

    def __init__(self, event_dims: int, scale: float) -> None:
        super().__init__(event_dims)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def forward(self, params: Tensor) -> Distribution:
        (loc,) = self._split(params)
        log_scale = self.log_scale.clamp(LOG_SCALE_MIN, LOG_SCALE_MAX).to(loc.dtype)
        return self._event(Normal(loc, log_scale.exp().expand_as(loc)))


LIKELIHOODS = {
    "bernoulli": "binary or [0, 1] data (the classic MNIST choice)",
    "continuous-bernoulli": "[0, 1] grey data, properly normalised",
    "gaussian": "real or [0, 1] data, fixed standard deviation model.obs_scale",
    "gaussian-learned": "Gaussian with a learned standard deviation per element",
    "gaussian-global": "Gaussian with one learned standard deviation",
}


def build_likelihood(name: str, event_dims: int, obs_scale: float = 0.1) -> Likelihood:
    if name == "bernoulli":
        return BernoulliLikelihood(event_dims)
    if name == "continuous-bernoulli":
        return ContinuousBernoulliLikelihood(event_dims)
    if name == "gaussian":
        return GaussianLikelihood(event_dims, obs_scale)
    if name == "gaussian-learned":
        return LearnedGaussianLikelihood(event_dims)
    if name == "gaussian-global":
        return GlobalGaussianLikelihood(event_dims, obs_scale)
    raise ValueError(f"unknown likelihood '{name}'; choose from {', '.join(LIKELIHOODS)}")
