"""Objectives: score a model's Output against x. beta-VAE and IWAE are settings, not models.

ELBO: Kingma & Welling (2014), eq. 3 and Appendix B (the Gaussian KL in closed form).
IWAE: Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders", eq. 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.distributions import Distribution, kl_divergence

from vaelab.config import ObjectiveConfig
from vaelab.models.vae import Output


@dataclass
class Loss:
    """A scalar to minimise and its parts, each per example (B,) so callers can sum or average."""

    loss: Tensor  # scalar: the batch mean of the negative (weighted) bound
    elbo: Tensor  # (B,) the unweighted bound on log p(x) (the IWAE bound for iwae)
    reconstruction: Tensor  # (B,) E_q[log p(x|z)]
    kl: Tensor  # (B,) KL(q(z|x) || p(z))
    metrics: dict[str, float] = field(default_factory=dict)


def kl_term(qz: Distribution, pz: Distribution, z: Tensor) -> Tensor:
    """KL(q || p) per example (B,): analytic where torch has a formula, else Monte Carlo on z."""
    try:
        return kl_divergence(qz, pz)
    except NotImplementedError:
        return (qz.log_prob(z) - pz.log_prob(z)).mean(0)


def kl_per_dim(qz: Distribution, pz: Distribution) -> Tensor:
    """KL of each latent dimension (B, D) for factorised q and p (sums to the full KL)."""
    return kl_divergence(qz.base_dist, pz.base_dist)


def log_px(out: Output, x: Tensor) -> Tensor:
    """log p(x|z) for every sample (S, B), in float32 even under autocast."""
    return out.px.log_prob(x.to(out.px.mean.dtype)).float()


def elbo(out: Output, x: Tensor, beta: float = 1.0) -> Loss:
    """The ELBO E_q[log p(x|z)] - KL, with the KL weighted by beta in the loss (beta-VAE)."""
    reconstruction = log_px(out, x).mean(0)  # (B,)
    kl = kl_term(out.qz, out.pz, out.z).float()
    bound = reconstruction - kl
    loss = -(reconstruction - beta * kl).mean()
    return Loss(loss=loss, elbo=bound, reconstruction=reconstruction, kl=kl)


def log_weights(out: Output, x: Tensor) -> Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for each sample (S, B), in float32."""
    z = out.z.float()
    return log_px(out, x) + out.pz.log_prob(z).float() - out.qz.log_prob(z).float()


def iwae(out: Output, x: Tensor) -> Loss:
    """The importance-weighted bound log (1/k) sum_k w_k over the S = k samples of `out`."""
    logw = log_weights(out, x)  # (S, B)
    bound = torch.logsumexp(logw, 0) - math.log(logw.shape[0])
    reconstruction = log_px(out, x).mean(0)
    kl = kl_term(out.qz, out.pz, out.z).float()
    return Loss(loss=-bound.mean(), elbo=bound, reconstruction=reconstruction, kl=kl)


def autoencoder(out: Output, x: Tensor) -> Loss:
    """A plain autoencoder: reconstruction only, from a deterministic z (forward(deterministic))."""
    parts = elbo(out, x)
    return Loss(loss=-parts.reconstruction.mean(), elbo=parts.elbo,
                reconstruction=parts.reconstruction, kl=parts.kl)


def kl_only(out: Output, x: Tensor) -> Loss:
    """Only the KL term: the codes carry no information about x (a control for comparisons)."""
    parts = elbo(out, x)
    return Loss(loss=parts.kl.mean(), elbo=parts.elbo, reconstruction=parts.reconstruction,
                kl=parts.kl)


OBJECTIVES = {
    "elbo": "the ELBO, KL weighted by beta (Kingma & Welling 2014; Higgins et al. 2017)",
    "iwae": "the importance-weighted bound with k = num_samples (Burda et al. 2016)",
    "ae": "a plain autoencoder: deterministic z, reconstruction only",
    "kl-only": "the KL term alone: a model whose codes ignore x",
}


def is_deterministic(config: ObjectiveConfig) -> bool:
    """Whether the forward pass should use z = E_q[z] (the plain autoencoder)."""
    return config.name == "ae"


def compute_loss(config: ObjectiveConfig, out: Output, x: Tensor) -> Loss:
    """The loss that `config` names for a forward pass made with config.num_samples samples."""
    if config.name == "iwae":
        return iwae(out, x)
    if config.name == "ae":
        return autoencoder(out, x)
    if config.name == "kl-only":
        return kl_only(out, x)
    return elbo(out, x, beta=config.beta)
