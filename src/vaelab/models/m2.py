"""M2, the semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014), "Semi-Supervised
Learning with Deep Generative Models", https://arxiv.org/abs/1406.5298, section 3.1.2.

The class y is a latent variable that some examples observe: p(y) uniform, p(z) = N(0, I),
p(x|y,z) the decoder; q(y|x) a classifier and q(z|x,y) the encoder. It is a conditional VAE
(cond_dim = K classes, one-hot y joins the encoder input and z) with a classifier added. One
forward pass encodes and decodes every example once per class, in one batch of K * B, so the
objective (vaelab.objectives.m2) can sum y out exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from vaelab.models.likelihoods import Likelihood
from vaelab.models.vae import VAE, Output, one_hot


@dataclass
class SemiOutput(Output):
    """An Output for every (class, example) pair, class-major: qz and pz have batch (K * B,),
    px (S, K * B), z (S, K * B, D); row k * B + i is example i with y = k."""

    qy: Categorical  # q(y|x): batch (B,), K classes
    y: Tensor  # (B,) the observed labels, -1 where unknown


class M2(VAE):
    """A conditional VAE over K classes whose class may be unobserved, with a classifier q(y|x).

    Args:
        encoder, decoder, likelihood, latent_dim, x_shape: as for VAE, conditioned on one-hot y.
        num_classes: K.
        classifier: maps x (B, *x_shape) to class logits (B, K).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood,
                 latent_dim: int, x_shape: list[int], num_classes: int,
                 classifier: nn.Module) -> None:
        super().__init__(encoder, decoder, likelihood, latent_dim, x_shape, cond_dim=num_classes)
        self.classifier = classifier

    def classify(self, x: Tensor) -> Categorical:
        """q(y|x) for x (B, *x_shape): batch (B,), over K classes."""
        return Categorical(logits=self.classifier(x).float())

    def condition(self, y: Tensor | None) -> Tensor | None:
        """M2 takes the labels themselves (B,), -1 where unknown (see `forward`)."""
        return y

    def forward(self, x: Tensor, y: Tensor | None = None, num_samples: int = 1,
                generator: torch.Generator | None = None, deterministic: bool = False,
                eps: Tensor | None = None) -> SemiOutput:
        """q(y|x), and z ~ q(z|x,y) decoded for every class y of every example.

        Args:
            x: (B, *x_shape).
            y: labels (B,), -1 where unknown; None: all unknown.
            eps: (S, B, D) noise, shared by the K classes of an example.
        """
        k, b = self.cond_dim, len(x)
        labels = torch.full((b,), -1, dtype=torch.long, device=x.device) if y is None else y
        classes = torch.arange(k, device=x.device).repeat_interleave(b)  # (K * B,) class-major
        xk = x.repeat(k, *[1] * (x.dim() - 1))  # (K * B, *x_shape)
        eps = None if eps is None else eps.repeat(1, k, 1)  # (S, K * B, D)
        out = super().forward(xk, one_hot(classes, k), num_samples, generator, deterministic, eps)
        return SemiOutput(qz=out.qz, pz=out.pz, px=out.px, z=out.z, qy=self.classify(x),
                          y=labels)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """As VAE.reconstruct; y (one-hot) defaults to the classifier's most probable class."""
        if y is None:
            y = one_hot(self.classify(x).probs.argmax(-1), self.cond_dim)
        return super().reconstruct(x, y)
