"""Fully connected encoder and decoder networks (the default for flat or small data)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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

    def forward(self, x: Tensor, y: Tensor | None = None,
                rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """rows (R,), if given, asks for the rows x[rows] with conditions y (R, Y): the first
        layer's product with x is computed once per example, not once per row (M2 encodes
        every example once per class)."""
        h = x.flatten(1)
        net: nn.Module = self.net  # the layers h still goes through
        if rows is not None:
            first, n, net = self.net[0], h.shape[1], self.net[1:]
            assert isinstance(first, nn.Linear)
            h = F.linear(h, first.weight[:, :n])[rows]  # (R, H), x's share of the first layer
            h = h + (first.bias if y is None else F.linear(y.to(h.dtype), first.weight[:, n:],
                                                          first.bias))
        elif y is not None:
            h = cat_condition(h, y)
        loc, log_var = net(h).chunk(2, dim=-1)
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
