"""M2, the semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014), "Semi-Supervised
Learning with Deep Generative Models", https://arxiv.org/abs/1406.5298, section 3.1.2.

The class y is a latent variable that some examples observe: p(y) uniform, p(z) = N(0, I),
p(x|y,z) the decoder; q(y|x) a classifier and q(z|x,y) the encoder. It is a conditional VAE
(cond_dim = K classes, one-hot y joins the encoder input and z) with a classifier added. One
forward pass encodes and decodes every unlabelled example once per class and every labelled one
at its own class, in one batch of rows, so the objective (vaelab.objectives.m2) can sum y out
exactly. The encoder's first layer multiplies each example once, not once per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from vaelab.models.likelihoods import Likelihood
from vaelab.models.vae import VAE, Output, one_hot, rsample


@dataclass
class SemiOutput(Output):
    """An Output for R rows, each an (example, class) pair: every class of an unlabelled example
    (class-major, first) and the own class of a labelled one (after). qz and pz have batch (R,),
    px (S, R), z (S, R, D). With no labels, row k * B + i is example i with y = k."""

    qy: Categorical  # q(y|x): batch (B,), K classes
    y: Tensor  # (B,) the observed labels, -1 where unknown
    example: Tensor  # (R,) the example of each row
    klass: Tensor  # (R,) the class of each row

    def grid(self, values: Tensor) -> Tensor:
        """Row values (R, ...) laid out by class and example, (K, B, ...); 0 where there is no
        row (the other classes of a labelled example)."""
        b, k = self.qy.logits.shape
        out = values.new_zeros(k, b, *values.shape[1:])
        return out.index_put((self.klass, self.example), values)


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
        """q(y|x), and z ~ q(z|x,y) decoded for every class y of every unlabelled example and
        for the observed class of every labelled one.

        Args:
            x: (B, *x_shape).
            y: labels (B,), -1 where unknown; None: all unknown.
            eps: (S, B, D) noise, shared by the K classes of an example.
        """
        k, b = self.cond_dim, len(x)
        labels = torch.full((b,), -1, dtype=torch.long, device=x.device) if y is None else y
        unknown, known = (labels < 0).nonzero()[:, 0], (labels >= 0).nonzero()[:, 0]
        example = torch.cat([unknown.repeat(k), known])  # (R,)
        klass = torch.cat([torch.arange(k, device=x.device).repeat_interleave(len(unknown)),
                           labels[known]])
        yk = one_hot(klass, k)
        qz = self.encode(x, yk, rows=example)
        if deterministic:
            z = qz.mean.expand(num_samples, *qz.mean.shape)
        else:  # an example's rows share its noise
            z = rsample(qz, num_samples, generator, None if eps is None else eps[:, example])
        return SemiOutput(qz=qz, pz=self.prior(qz.mean), px=self.decode(z, yk), z=z,
                          qy=self.classify(x), y=labels, example=example, klass=klass)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """As VAE.reconstruct; y (one-hot) defaults to the classifier's most probable class."""
        if y is None:
            y = one_hot(self.classify(x).probs.argmax(-1), self.cond_dim)
        return super().reconstruct(x, y)
