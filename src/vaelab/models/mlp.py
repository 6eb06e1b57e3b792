"""Fully connected encoder and decoder networks (the default for flat or small data)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "elu": nn.ELU,
            "softplus": nn.Softplus}[name]()


def mlp(sizes: list[int], act: str) -> nn.Sequential:
    """Linear layers of the given sizes with an activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x (B, *x_shape) [and y (B, Y)] -> the parameters (loc, log_var) of q(z|x), each (B, D)."""

    def __init__(self, x_shape: list[int], latent_dim: int, hidden: list[int], act: str,
                 cond_dim: int = 0) -> None:
        super().__init__()
        self.net = mlp([math.prod(x_shape) + cond_dim, *hidden, 2 * latent_dim], act)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = x.flatten(1)
        if y is not None:
            h = cat_condition(h, y)
        loc, log_var = self.net(h).chunk(2, dim=-1)
        return loc, log_var


class MLPDecoder(nn.Module):
    """z (N, D) [and y (N, Y)] -> likelihood parameters (N, P, *x_shape)."""

    def __init__(self, x_shape: list[int], latent_dim: int, hidden: list[int], act: str,
                 num_params: int, cond_dim: int = 0) -> None:
        super().__init__()
        self.x_shape, self.num_params = list(x_shape), num_params
        out = num_params * math.prod(x_shape)
        self.net = mlp([latent_dim + cond_dim, *reversed(hidden), out], act)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        h = z if y is None else cat_condition(z, y)
        return self.net(h).view(-1, self.num_params, *self.x_shape)


def cat_condition(a: Tensor, y: Tensor) -> Tensor:
    """Appends the condition y to features a, in a's dtype (y may arrive as integers)."""
    return torch.cat([a, y.to(a.dtype)], dim=-1)
