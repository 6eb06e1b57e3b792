"""The variational autoencoder: encoder q(z|x), prior p(z), decoder and likelihood p(x|z).

Kingma & Welling (2014), "Auto-Encoding Variational Bayes", https://arxiv.org/abs/1312.6114.
The model only produces distributions; scoring them (ELBO, IWAE, beta, ...) is the objective's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Normal

from vaelab.models.likelihoods import Likelihood

LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 20.0  # keeps exp(log_var) finite in float32


@dataclass
class Output:
    """What one forward pass produces; shapes for a batch of B inputs and S latent samples."""

    qz: Distribution  # q(z|x): batch (B,), event (D,)
    pz: Distribution  # p(z): batch (B,), event (D,)
    px: Distribution  # p(x|z): batch (S, B), event x_shape
    z: Tensor  # (S, B, D)


class VAE(nn.Module):
    """A VAE assembled from an encoder net, a decoder net and a likelihood.

    Args:
        encoder: maps x (B, *x_shape) [, y (B, Y)] to (loc, log_var), each (B, D).
        decoder: maps z (N, D) [, y (N, Y)] to likelihood parameters (N, P, *x_shape).
        likelihood: turns those parameters into p(x|z).
        latent_dim: D.
        x_shape: the shape of one input, e.g. (1, 28, 28).
        cond_dim: size of the condition vector y (0 for an unconditional VAE).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
                 latent_dim: int, x_shape: list[int], cond_dim: int = 0) -> None:
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.latent_dim, self.x_shape, self.cond_dim = latent_dim, list(x_shape), cond_dim

    def encode(self, x: Tensor, y: Tensor | None = None,
               rows: Tensor | None = None) -> Distribution:
        """q(z|x) for x (B, *x_shape): a diagonal Gaussian, batch (B,), event (D,).

        rows (R,), if given, encodes x[rows] with y (R, Y) instead: batch (R,), the encoder
        sharing the work of repeated examples (M2 encodes each example once per class)."""
        self._check_condition(y)
        params = self.encoder(x, y) if rows is None else self.encoder(x, y, rows)
        loc, log_var = (t.float() for t in params)  # float32 under bf16 autocast
        scale = (0.5 * log_var.clamp(LOG_VAR_MIN, LOG_VAR_MAX)).exp()
        return Independent(Normal(loc, scale), 1)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        """p(x|z) for z (..., D): batch (...), event x_shape. y (B, Y) broadcasts over samples."""
        self._check_condition(y)
        lead = z.shape[:-1]
        if y is not None:
            y = y.expand(*lead, y.shape[-1]).reshape(-1, y.shape[-1])
        params = self.decoder(z.reshape(-1, self.latent_dim), y).float()  # (N, P, *x_shape)
        return self.likelihood(params.view(*lead, *params.shape[1:]))  # batch (...)

    def prior(self, like: Tensor) -> Distribution:
        """p(z) = N(0, I), batch like `like`'s leading dims, on its device and dtype."""
        zeros = torch.zeros(*like.shape[:-1], self.latent_dim, device=like.device, dtype=like.dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def forward(self, x: Tensor, y: Tensor | None = None, num_samples: int = 1,
                generator: torch.Generator | None = None, deterministic: bool = False,
                eps: Tensor | None = None) -> Output:
        """Encodes x, draws S samples z ~ q(z|x) (or z = E_q[z] if deterministic), decodes.

        eps, if given, is the standard normal noise (S, B, D) of z = mu + sigma * eps, drawn
        by the caller (distributed training draws it for the whole global batch)."""
        qz = self.encode(x, y)
        if deterministic:  # a plain autoencoder's code
            z = qz.mean.expand(num_samples, *qz.mean.shape)
        else:
            z = rsample(qz, num_samples, generator, eps)  # (S, B, D)
        return Output(qz=qz, pz=self.prior(qz.mean), px=self.decode(z, y), z=z)

    def condition(self, y: Tensor | None) -> Tensor | None:
        """What the forward pass takes as y for labels y (B,): one-hot (B, Y) for a conditional
        VAE, None for an unconditional one (M2 takes the labels themselves)."""
        return one_hot(y, self.cond_dim)

    @torch.no_grad()
    def sample(self, n: int, y: Tensor | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from prior draws: the mean of p(x|z), shape (n, *x_shape).

        Args:
            n: how many.
            y: the condition (n, Y) of a conditional VAE. None there draws from the marginal
                with a uniform p(y): the one-hot classes 0, 1, ..., Y-1, 0, ... in turn.
            generator: the source of z.
        """
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        if self.cond_dim and y is None:
            y = one_hot(torch.arange(n, device=device) % self.cond_dim, self.cond_dim)
        return self.decode(z, y).mean

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The mean of p(x|z) at the posterior mean z = E_q[z]: shape of x."""
        return self.decode(self.encode(x, y).mean, y).mean

    def _check_condition(self, y: Tensor | None) -> None:
        if self.cond_dim and y is None:
            raise ValueError("this is a conditional VAE: pass the condition y (B, Y)")
        if not self.cond_dim and y is not None:
            raise ValueError("this VAE is not conditional: y must be None")


def one_hot(y: Tensor | None, cond_dim: int) -> Tensor | None:
    """The condition vector y of a conditional VAE from labels: class indices (B,) become one-hot
    (B, Y); attribute vectors (B, Y) pass through as float. None when cond_dim is 0 or y is None."""
    if not cond_dim or y is None:
        return None
    return F.one_hot(y, cond_dim).float() if y.dim() == 1 else y.float()


def rsample(qz: Distribution, num_samples: int, generator: torch.Generator | None,
            eps: Tensor | None = None) -> Tensor:
    """Reparameterised draws z = loc + scale * eps, (S, B, D); eps ~ N(0, I) drawn from
    `generator` unless given."""
    loc, scale = qz.mean, qz.stddev  # of the diagonal Gaussian q(z|x)
    if eps is None:
        eps = torch.randn((num_samples, *loc.shape), generator=generator, device=loc.device,
                          dtype=loc.dtype)
    return loc + scale * eps

