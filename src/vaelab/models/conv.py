"""Convolutional encoder and decoder for images (C, H, W) of any size.

Each stage halves the image with a stride-2 3x3 convolution, H -> ceil(H / 2), so no size is
special (28x20 Frey faces, 8x8 digits, 13x17 colour crops). The decoder mirrors it with stride-2
transposed convolutions whose `output_padding` is chosen per stage from the encoder's sizes, so
it lands on H x W exactly. A dense head (the MLP nets of vaelab.models.mlp) sits between the
convolutions and z; a condition y joins the features at that head, as in the MLP nets.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from vaelab.models.mlp import MLPDecoder, MLPEncoder, activation


def stage_sizes(height: int, width: int, stages: int) -> list[tuple[int, int]]:
    """Feature-map sizes [(H, W), (ceil(H/2), ceil(W/2)), ...], stages + 1 entries."""
    sizes = [(height, width)]
    for _ in range(stages):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))  # a 3x3, stride-2, padding-1 convolution
    return sizes


def _image_shape(x_shape: list[int]) -> tuple[int, int, int]:
    if len(x_shape) != 3:
        raise ValueError(f"a convolutional model needs images (C, H, W), got x_shape {x_shape}")
    c, h, w = x_shape
    return c, h, w


class ConvEncoder(nn.Module):
    """x (B, C, H, W) [and y (B, Y)] -> the parameters (loc, log_var) of q(z|x), each (B, D).

    Args:
        x_shape: (C, H, W).
        latent_dim: D.
        channels: the width of each stride-2 stage, e.g. [32, 64] (two halvings).
        hidden: sizes of the dense layers between the flattened features and z.
        act: activation name (see vaelab.models.mlp.activation).
        cond_dim: Y, the size of the condition vector (0: unconditional).
    """

    def __init__(self, x_shape: list[int], latent_dim: int, channels: list[int], hidden: list[int],
                 act: str, cond_dim: int = 0) -> None:
        super().__init__()
        c, h, w = _image_shape(x_shape)
        layers: list[nn.Module] = []
        for c_in, c_out in zip([c, *channels[:-1]], channels, strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), activation(act)]
        self.convs = nn.Sequential(*layers)
        fh, fw = stage_sizes(h, w, len(channels))[-1]
        self.head = MLPEncoder([channels[-1] * fh * fw], latent_dim, hidden, act, cond_dim)

    def forward(self, x: Tensor, y: Tensor | None = None,
                rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """rows: as for MLPEncoder (the convolutions run once per example)."""
        return self.head(self.convs(x), y, rows)  # (B, C', h, w) -> flattened by the head


class ConvDecoder(nn.Module):
    """z (N, D) [and y (N, Y)] -> likelihood parameters (N, P, C, H, W).

    Args:
        x_shape: (C, H, W) of the images to produce.
        latent_dim: D.
        channels: the encoder's stage widths; the decoder runs them in reverse.
        hidden: the encoder's dense sizes; the decoder runs them in reverse.
        act: activation name.
        num_params: P, parameters per pixel that the likelihood needs.
        cond_dim: Y (0: unconditional).
    """

    def __init__(self, x_shape: list[int], latent_dim: int, channels: list[int], hidden: list[int],
                 act: str, num_params: int, cond_dim: int = 0) -> None:
        super().__init__()
        c, h, w = _image_shape(x_shape)
        self.x_shape, self.num_params = [c, h, w], num_params
        sizes = stage_sizes(h, w, len(channels))
        self.feature_shape = (channels[-1], *sizes[-1])
        self.head = MLPDecoder([math.prod(self.feature_shape)], latent_dim, hidden, act, 1, cond_dim)
        self.head_act = activation(act)
        layers: list[nn.Module] = []
        widths = list(reversed(channels))
        for i, (c_in, c_out) in enumerate(zip(widths, [*widths[1:], widths[-1]], strict=True)):
            th, tw = sizes[len(channels) - 1 - i]  # the size this stage must reach
            # (n - 1) * 2 - 2 + 3 + p = th with n = ceil(th / 2): p = 1 for even th, 0 for odd
            layers += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1,
                                          output_padding=(1 - th % 2, 1 - tw % 2)),
                       activation(act)]
        layers.append(nn.Conv2d(channels[0], num_params * c, 3, padding=1))
        self.convs = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.head_act(self.head(z, y)).view(-1, *self.feature_shape)  # (N, C', h, w)
        return self.convs(h).view(-1, self.num_params, *self.x_shape)  # (N, P, C, H, W)
