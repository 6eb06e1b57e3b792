"""Objectives: score a model's Output against x. beta-VAE and IWAE are settings, not models.

ELBO: Kingma & Welling (2014), eq. 3 and Appendix B (the Gaussian KL in closed form).
beta-VAE: Higgins et al. (2017), the KL weighted by beta (beta < 1 is allowed too).
KL warm-up: linear (Bowman et al. 2016) or cyclical (Fu et al. 2019, "Cyclical Annealing
    Schedule: A Simple Approach to Mitigating KL Vanishing", https://arxiv.org/abs/1903.10145).
Free bits: Kingma et al. (2016), "Improved Variational Inference with Inverse Autoregressive
    Flow", Appendix C.8, https://arxiv.org/abs/1606.04934.
Capacity control: Burgess et al. (2018), "Understanding disentangling in beta-VAE", section 5,
    https://arxiv.org/abs/1804.03599.
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

ACTIVE_THRESHOLD = 0.01  # Burda et al. (2016), section 5.2


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
    """log p(x|z) for every sample (S, B), in float32."""
    return out.px.log_prob(x).float()


def elbo(out: Output, x: Tensor, beta: float = 1.0, free_bits: float = 0.0,
         capacity: float | None = None) -> Loss:
    """The ELBO E_q[log p(x|z)] - KL; the loss weights and shapes the KL term.

    loss = -mean_B E_q[log p(x|z)] + beta * penalty, where the penalty is the batch-mean KL,
    or with free bits lambda the sum over dimensions j of max(lambda, mean_B KL_j) (Kingma et al.
    2016, Appendix C.8), and with a capacity C its distance |penalty - C| (Burgess et al. 2018).
    `elbo` in the result is always the plain, unweighted bound.
    """
    reconstruction = log_px(out, x).mean(0)  # (B,)
    kl = kl_term(out.qz, out.pz, out.z).float()  # (B,)
    penalty = kl.mean()
    if free_bits:
        per_dim = kl_per_dim(out.qz, out.pz).float().mean(0)  # (D,) batch mean per dimension
        penalty = per_dim.clamp(min=free_bits).sum()  # no KL gradient below the floor
    if capacity is not None:
        penalty = (penalty - capacity).abs()
    loss = -reconstruction.mean() + beta * penalty
    return Loss(loss=loss, elbo=reconstruction - kl, reconstruction=reconstruction, kl=kl)


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


def kl_weight(config: ObjectiveConfig, epoch: float | None = None) -> float:
    """beta times the warm-up factor at `epoch` (fractional epochs; None: warm-up is over).

    linear: min(1, epoch / warmup_epochs). cyclical (Fu et al. 2019): with tau the position in
    the current cycle of warmup_epochs, in [0, 1), the factor is min(1, tau / cycle_ratio).
    """
    if config.warmup == "none" or epoch is None:
        return config.beta
    t = epoch / config.warmup_epochs
    factor = min(1.0, t) if config.warmup == "linear" else min(1.0, (t % 1.0) / config.cycle_ratio)
    return config.beta * factor


def capacity_at(config: ObjectiveConfig, epoch: float | None = None) -> float | None:
    """The target KL C at `epoch`, rising linearly from 0 to config.capacity (None: off)."""
    if not config.capacity:
        return None
    if epoch is None:
        return config.capacity
    return config.capacity * min(1.0, epoch / config.capacity_epochs)


def compute_loss(config: ObjectiveConfig, out: Output, x: Tensor,
                 epoch: float | None = None) -> Loss:
    """The loss that `config` names for a forward pass made with config.num_samples samples.

    Args:
        config: the objective settings.
        out: the model's Output for x.
        x: the inputs (B, *x_shape).
        epoch: training progress in fractional epochs, for the KL warm-up and capacity
            schedules; None means the schedules are over (full weight, full capacity).
    """
    if config.name == "iwae":
        return iwae(out, x)
    if config.name == "ae":
        return autoencoder(out, x)
    if config.name == "kl-only":
        return kl_only(out, x)
    beta, capacity = kl_weight(config, epoch), capacity_at(config, epoch)
    loss = elbo(out, x, beta=beta, free_bits=config.free_bits, capacity=capacity)
    loss.metrics["kl_weight"] = beta
    if capacity is not None:
        loss.metrics["capacity"] = capacity
    return loss


def active_units(loc: Tensor, threshold: float = ACTIVE_THRESHOLD) -> Tensor:
    """Which latent dimensions are active, (D,) bool, from posterior means loc (N, D).

    Burda et al. (2016), section 5.2: unit u is active when Cov_x(E_q[z_u|x]) > 0.01.
    """
    if loc.shape[0] < 2:
        return torch.zeros(loc.shape[-1], dtype=torch.bool, device=loc.device)
    return loc.float().var(0) > threshold
