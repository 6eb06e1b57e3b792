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
M2: Kingma, Rezende, Mohamed & Welling (2014), "Semi-Supervised Learning with Deep Generative
    Models", eqs. 6-9, https://arxiv.org/abs/1406.5298.

Every mean over the batch goes through a `BatchMean`, so that a batch split across processes
(distributed training) is scored as the whole batch: free bits and capacity are non-linear in
the batch mean, and shards may differ in size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.distributions import Distribution, Independent, kl_divergence

from vaelab.config import ObjectiveConfig
from vaelab.errors import VaelabError
from vaelab.models.m2 import SemiOutput
from vaelab.models.vae import Output

ACTIVE_THRESHOLD = 0.01  # Burda et al. (2016), section 5.2


@dataclass(frozen=True)
class BatchMean:
    """The mean over a global batch of which this process holds a part (all of it in one process).

    Called on per-example values (B_local, ...) it returns their mean over the global batch of
    `batch_size` examples (...): the local sums are added up over the processes with
    `all_reduce` (detached), and the gradient reaches this process's examples scaled by
    world_size / batch_size. DistributedDataParallel then averages the gradients over the
    world_size processes, so every example of the global batch ends up with weight
    1 / batch_size, however the batch was split:
        mean = total.detach() / B + (local - local.detach()) * world_size / B
    Without `all_reduce` (one process) it is the plain mean with the ordinary gradient.

    Attributes:
        batch_size: B, the size of the global batch (unused in one process).
        world_size: the number of processes holding parts of it.
        all_reduce: sums a tensor over the processes, in place, and returns it; None: one
            process.
    """

    batch_size: int = 0
    world_size: int = 1
    all_reduce: Callable[[Tensor], Tensor] | None = None

    def __call__(self, values: Tensor) -> Tensor:
        if self.all_reduce is None:
            return values.mean(0)
        local = values.sum(0)
        total = self.all_reduce(local.detach().clone())  # the clone: all_reduce works in place
        scale = self.world_size / self.batch_size  # DDP divides the summed gradients by world_size
        return total / self.batch_size + (local - local.detach()) * scale


@dataclass
class Loss:
    """A scalar to minimise and its parts, each per example (B,) so callers can sum or average."""

    loss: Tensor  # scalar: what the optimiser minimises, a mean over the (global) batch
    reconstruction: Tensor  # (B,) E_q[log p(x|z)] over the S samples (at z = E_q[z] for ae)
    kl: Tensor  # (B,) KL(q(z|x) || p(z))
    elbo: Tensor | None  # (B,) the ELBO, reconstruction - kl; None where z was not drawn from q
    bound: Tensor | None  # (B,) the objective's own bound on log p(x) (Objective.bound names it)
    metrics: dict[str, float] = field(default_factory=dict)  # the schedules' current values


def kl_term(qz: Distribution, pz: Distribution, z: Tensor) -> Tensor:
    """KL(q || p) per example (B,): analytic where torch has a formula, else Monte Carlo on z."""
    try:
        return kl_divergence(qz, pz)
    except NotImplementedError:
        return (qz.log_prob(z) - pz.log_prob(z)).mean(0)


def kl_per_dim(qz: Distribution, pz: Distribution) -> Tensor:
    """KL of each latent dimension (B, D) for factorised q and p (sums to the full KL)."""
    if not (isinstance(qz, Independent) and isinstance(pz, Independent)):
        raise TypeError(f"kl_per_dim needs factorised (Independent) q and p, got "
                        f"{type(qz).__name__} and {type(pz).__name__}")
    return kl_divergence(qz.base_dist, pz.base_dist)


def log_px(out: Output, x: Tensor) -> Tensor:
    """log p(x|z) for every sample (S, B), in float32."""
    return out.px.log_prob(x).float()


def reconstruction_and_kl(out: Output, x: Tensor) -> tuple[Tensor, Tensor]:
    """E_q[log p(x|z)] averaged over the S samples (B,), and KL(q(z|x) || p(z)) (B,)."""
    return log_px(out, x).mean(0), kl_term(out.qz, out.pz, out.z).float()


def elbo(out: Output, x: Tensor, weight: float = 1.0, free_bits: float = 0.0,
         capacity: float | None = None, mean: BatchMean = BatchMean()) -> Loss:
    """The ELBO E_q[log p(x|z)] - KL; the loss weights and shapes the KL term.

    loss = -mean_B E_q[log p(x|z)] + weight * penalty, where the penalty is the batch-mean KL,
    or with free bits lambda the sum over dimensions j of max(lambda, mean_B KL_j) (Kingma et al.
    2016, Appendix C.8), and with a capacity C its distance |penalty - C| (Burgess et al. 2018,
    section 5, whose weight is gamma). `elbo` and `bound` in the result are the plain bound.

    Args:
        out: the model's Output for x, z of shape (S, B, D).
        x: the inputs (B, *x_shape).
        weight: the weight of the KL penalty (beta, or gamma under capacity control).
        free_bits: lambda, the floor of each dimension's batch-mean KL in nats (0: off).
        capacity: the target KL C in nats (None: off).
        mean: the batch mean (the global batch's under distributed training).
    """
    reconstruction, kl = reconstruction_and_kl(out, x)  # (B,), (B,)
    if free_bits:
        per_dim = mean(kl_per_dim(out.qz, out.pz).float())  # (D,) batch mean per dimension
        penalty = per_dim.clamp(min=free_bits).sum()  # no KL gradient below the floor
    else:
        penalty = mean(kl)
    if capacity is not None:
        penalty = (penalty - capacity).abs()
    loss = -mean(reconstruction) + weight * penalty
    bound = reconstruction - kl
    return Loss(loss=loss, reconstruction=reconstruction, kl=kl, elbo=bound, bound=bound)


def log_weights(out: Output, x: Tensor) -> Tensor:
    """log w = log p(x|z) + log p(z) - log q(z|x) for each sample (S, B), in float32."""
    z = out.z.float()
    return log_px(out, x) + out.pz.log_prob(z).float() - out.qz.log_prob(z).float()


def iwae(out: Output, x: Tensor, mean: BatchMean = BatchMean()) -> Loss:
    """The importance-weighted bound log (1/k) sum_k w_k over the S = k samples of `out`
    (Burda et al. 2016, eq. 8) in `bound`; `elbo` is the ELBO on the same samples."""
    logw = log_weights(out, x)  # (S, B)
    bound = torch.logsumexp(logw, 0) - math.log(logw.shape[0])  # (B,)
    reconstruction, kl = reconstruction_and_kl(out, x)
    return Loss(loss=-mean(bound), reconstruction=reconstruction, kl=kl,
                elbo=reconstruction - kl, bound=bound)


def autoencoder(out: Output, x: Tensor, mean: BatchMean = BatchMean()) -> Loss:
    """A plain autoencoder: reconstruction only, from a deterministic z (forward(deterministic)).
    It has no bound on log p(x): `elbo` and `bound` are None."""
    reconstruction, kl = reconstruction_and_kl(out, x)
    return Loss(loss=-mean(reconstruction), reconstruction=reconstruction, kl=kl, elbo=None,
                bound=None)


def kl_only(out: Output, x: Tensor, mean: BatchMean = BatchMean()) -> Loss:
    """Only the KL term: the codes carry no information about x (a control for comparisons)."""
    reconstruction, kl = reconstruction_and_kl(out, x)
    bound = reconstruction - kl
    return Loss(loss=mean(kl), reconstruction=reconstruction, kl=kl, elbo=bound, bound=bound)


def shaped_elbo(config: ObjectiveConfig, out: Output, x: Tensor, epoch: float | None,
                mean: BatchMean) -> Loss:
    """The ELBO with config's KL weight, warm-up, free bits and capacity at `epoch`."""
    weight, capacity = kl_weight(config, epoch), capacity_at(config, epoch)
    loss = elbo(out, x, weight=weight, free_bits=config.free_bits, capacity=capacity, mean=mean)
    loss.metrics["kl_weight"] = weight
    if capacity is not None:
        loss.metrics["capacity"] = capacity
    return loss


def m2(config: ObjectiveConfig, out: Output, x: Tensor, epoch: float | None,
       mean: BatchMean) -> Loss:
    """The semi-supervised objective of M2 (Kingma et al. 2014, eqs. 6-9) on a SemiOutput.

    With L(x, y) = E_q(z|x,y)[log p(x|y,z)] + log p(y) - KL(q(z|x,y) || p(z)), the bound on
    log p(x, y) (eq. 6), a labelled example scores L(x, y) - alpha * (-log q(y|x)) (eq. 9) and
    an unlabelled one U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) (eq. 7), y summed out exactly.
    alpha is per labelled example and step. Its default N / N_l (vaelab.training.prepare) is
    ten times the paper's alpha = 0.1 N on a mean over the N_l labelled examples: with a
    labelled batch in every step, it reached a lower test error sooner on MNIST with 100
    labels (benchmarks/README.md).
    """
    if not isinstance(out, SemiOutput):
        raise TypeError("the m2 objective scores the SemiOutput of an M2 model")
    qy, labels = out.qy, out.y
    k = qy.logits.shape[-1]
    recon, kl = reconstruction_and_kl(out, x[out.example])  # (R,) each, a row per (x, y) pair
    joint = out.grid(recon - kl - math.log(k))  # (K, B): L(x, y), p(y) = 1/K
    recon = out.grid(recon)
    known = labels >= 0
    y = labels.clamp(min=0)[None]  # (1, B)
    probs = qy.probs.T  # (K, B)
    bound = torch.where(known, joint.gather(0, y)[0], (probs * joint).sum(0) + qy.entropy())
    reconstruction = torch.where(known, recon.gather(0, y)[0], (probs * recon).sum(0))
    cross_entropy = -qy.log_prob(y[0]) * known  # (B,), 0 where the label is unknown
    alpha = config.alpha if config.alpha is not None else 0.0
    loss = mean(-bound + alpha * cross_entropy)
    # kl: everything the bound takes off the reconstruction (the KL of z, and of y from p(y))
    return Loss(loss=loss, reconstruction=reconstruction, kl=reconstruction - bound,
                elbo=bound, bound=bound, metrics={"alpha": alpha})


LossFn = Callable[[ObjectiveConfig, Output, Tensor, float | None, BatchMean], Loss]


def _unshaped(fn: Callable[[Output, Tensor, BatchMean], Loss]) -> LossFn:
    """An objective without settings of its own, in the table's call signature."""
    return lambda config, out, x, epoch, mean: fn(out, x, mean)


@dataclass(frozen=True)
class Objective:
    """One entry of OBJECTIVES: how to score a forward pass, and what that implies.

    Attributes:
        loss: (config, out, x, epoch, mean) -> Loss.
        description: one line for help texts.
        bound: the name under which Loss.bound is logged and plotted; None: no bound (ae).
        deterministic: the forward pass uses z = E_q[z] instead of sampling.
        shapes_kl: accepts beta, KL warm-up, free bits and capacity.
        trains_decoder: the loss reaches the decoder (distributed training needs a gradient
            for every weight).
        semi_supervised: for the M2 family: labels are partly observed, and training adds a
            batch of labelled examples to every step.
    """

    loss: LossFn
    description: str
    bound: str | None
    deterministic: bool = False
    shapes_kl: bool = False
    trains_decoder: bool = True
    semi_supervised: bool = False

    @property
    def logged(self) -> tuple[str, ...]:
        """The names of the per-example terms that training logs, in the order of terms()."""
        return ("reconstruction",) if self.bound is None else (self.bound, "reconstruction", "kl")

    def terms(self, loss: Loss) -> dict[str, Tensor]:
        """The per-example terms (B,) of `loss` that training logs, by name."""
        values = {"reconstruction": loss.reconstruction, "kl": loss.kl}
        if self.bound is not None:
            if loss.bound is None:
                raise ValueError(f"the loss has no bound, but the objective logs one ({self.bound})")
            values[self.bound] = loss.bound
        return {name: values[name] for name in self.logged}


OBJECTIVES: dict[str, Objective] = {  # the keys are vaelab.config.OBJECTIVE_NAMES
    "elbo": Objective(shaped_elbo, "the ELBO, KL weighted by beta (Kingma & Welling 2014; "
                      "Higgins et al. 2017), with warm-up, free bits or capacity", bound="elbo",
                      shapes_kl=True),
    "iwae": Objective(_unshaped(iwae), "the importance-weighted bound with k = num_samples "
                      "(Burda et al. 2016)", bound="iwae_bound"),
    "ae": Objective(_unshaped(autoencoder), "a plain autoencoder: deterministic z, "
                    "reconstruction only", bound=None, deterministic=True),
    "kl-only": Objective(_unshaped(kl_only), "the KL term alone: a model whose codes ignore x",
                         bound="elbo", trains_decoder=False),
    "m2": Objective(m2, "M2: y a partly observed latent, summed out where unknown (Kingma et al. "
                    "2014)", bound="elbo", semi_supervised=True),
}


def kl_weight(config: ObjectiveConfig, epoch: float | None = None) -> float:
    """The weight of the KL penalty at `epoch` (fractional epochs; None: warm-up is over):
    beta, or gamma under capacity control (Burgess et al. 2018), times the warm-up factor.

    linear: min(1, epoch / warmup_epochs). cyclical (Fu et al. 2019): with tau the position in
    the current cycle of warmup_epochs, in [0, 1), the factor is min(1, tau / cycle_ratio).
    """
    weight = config.gamma if config.capacity else config.beta
    if config.warmup == "none" or epoch is None:
        return weight
    t = epoch / config.warmup_epochs
    factor = min(1.0, t) if config.warmup == "linear" else min(1.0, (t % 1.0) / config.cycle_ratio)
    return weight * factor


def capacity_at(config: ObjectiveConfig, epoch: float | None = None) -> float | None:
    """The target KL C at `epoch`, rising linearly from 0 to config.capacity (None: off)."""
    if not config.capacity:
        return None
    if epoch is None:
        return config.capacity
    return config.capacity * min(1.0, epoch / config.capacity_epochs)


def compute_loss(config: ObjectiveConfig, out: Output, x: Tensor, epoch: float | None = None,
                 mean: BatchMean = BatchMean()) -> Loss:
    """The loss that `config` names for a forward pass made with config.num_samples samples
    (deterministic where OBJECTIVES[config.name].deterministic).

    Args:
        config: the objective settings.
        out: the model's Output for x.
        x: the inputs (B, *x_shape).
        epoch: training progress in fractional epochs, for the KL warm-up and capacity
            schedules; None means the schedules are over (full weight, full capacity).
        mean: the batch mean; distributed training passes the global batch's.
    """
    return OBJECTIVES[config.name].loss(config, out, x, epoch, mean)


def active_units(loc: Tensor, threshold: float = ACTIVE_THRESHOLD) -> Tensor:
    """Which latent dimensions are active, (D,) bool, from posterior means loc (N, D).

    Burda et al. (2016), section 5.2: unit u is active when Cov_x(E_q[z_u|x]) > 0.01.
    """
    if loc.shape[0] < 2:
        return torch.zeros(loc.shape[-1], dtype=torch.bool, device=loc.device)
    return loc.float().var(0) > threshold


def check_settings(o: ObjectiveConfig) -> None:
    """Refuses KL-shaping settings (beta, warm-up, free bits, capacity) for an objective whose
    table entry does not use them."""
    shaped = o.warmup != "none" or o.free_bits or o.capacity or o.beta != 1
    if shaped and not OBJECTIVES[o.name].shapes_kl:
        raise VaelabError(f"objective.beta, warmup, free_bits and capacity shape the ELBO; the "
                          f"'{o.name}' objective does not use them (use objective.name elbo)")
