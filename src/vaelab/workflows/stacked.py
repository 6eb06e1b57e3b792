"""M1+M2 seen as images: an M2 trained on the codes z1 of a VAE (M1) draws, reconstructs and
analyses images when its codes go through M1 (Kingma et al. 2014, section 3.1.3: p(x|z1) of M1
under p(z1|y,z2) of M2).

The figures and the exploration commands wrap such a run in `ThroughM1`: x is an image, its
code is M1's posterior mean E[z1|x] (the active dimensions M2 was trained on), and a decoded
code goes back through M1's decoder, the inactive dimensions at their prior mean 0. Its numbers
(vaelab evaluate) stay those of M2 on the codes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution

from vaelab import runfolder
from vaelab.data import Codes, Data, load_data
from vaelab.models import M2, VAE


class ThroughM1(M2):
    """An M2 on codes, with M1's encoder in front and M1's decoder behind: it takes and gives
    images of M1's x_shape.

    Args:
        m2: the M2 trained on the codes (its x_shape is the number of dimensions kept).
        m1: the VAE whose codes those are.
        dims: the dimensions of M1's z1 that M2 models.
    """

    def __init__(self, m2: M2, m1: VAE, dims: Sequence[int]) -> None:
        super().__init__(m2.encoder, m2.decoder, m2.likelihood, m2.latent_dim, m1.x_shape,
                         m2.cond_dim, m2.classifier)
        self.m1 = m1
        self.dims: Tensor
        self.register_buffer("dims", torch.tensor(list(dims), dtype=torch.long))

    def codes(self, x: Tensor) -> Tensor:
        """E[z1|x] on the kept dimensions, (B, D_kept), for images x (B, *x_shape)."""
        return self.m1.encode(x).mean[:, self.dims]

    def encode(self, x: Tensor, y: Tensor | None = None,
               rows: Tensor | None = None) -> Distribution:
        return super().encode(self.codes(x), y, rows)

    def classify(self, x: Tensor) -> Categorical:
        return super().classify(self.codes(x))

    def decode(self, z: Tensor, y: Tensor | None = None) -> Distribution:
        """p(x|z1) of M1 at z1 = the mean of M2's p(z1|y,z2), batch z's leading dims."""
        kept = super().decode(z, y).mean  # (..., D_kept)
        z1 = kept.new_zeros(*kept.shape[:-1], self.m1.latent_dim)
        z1[..., self.dims] = kept
        return self.m1.decode(z1)


def as_images(model: VAE, data: Data) -> tuple[VAE, Data]:
    """For an M2 on a VAE's codes (`data` is Codes): `ThroughM1` and the VAE's own data, whose
    splits hold the images; any other model and data as they are."""
    if not isinstance(data, Codes) or not isinstance(model, M2) or not data.dims:
        return model, data
    device = next(model.parameters()).device
    m1 = runfolder.load(data.run, device=device)
    images = load_data(runfolder.read_config(data.run).data)
    return ThroughM1(model, m1, data.dims).eval(), images
