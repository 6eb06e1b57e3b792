"""The containers of every dataset: `Split` (tensors x and labels y) and `Data` (the splits and
what the values are), and the two ways to split and binarize them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

VALID_SEED = 1234  # the validation split does not move with the training seed
BINARIZE_SEED = 4321  # fixed stochastic binarization of valid/test (the IWAE protocol)


@dataclass
class Split:
    """Inputs x (N, *x_shape) float32 and labels y (N,) int64 or None."""

    x: Tensor
    y: Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, index: Tensor | slice) -> Split:
        return Split(self.x[index], None if self.y is None else self.y[index])


@dataclass
class Data:
    """A dataset ready for training: splits, the shape of one input, its values and class names.

    `value_range` is "binary" (0/1), "unit" (grey levels in [0, 1]) or "real"; `levels` is the
    number of quantisation levels of the values, k / (levels - 1) for k = 0..levels-1 (2 for
    binary data, 256 for 8-bit images, 17 for scikit-learn's digits), None for continuous or
    unknown values. Both describe the data the model scores: after `binarize = "dynamic"` they
    say "binary" and 2, while `train.x` keeps the grey levels each batch is drawn from.
    `defaults` holds the model/train settings a user would expect for it, by config section.
    """

    name: str
    train: Split
    test: Split
    valid: Split | None = None
    value_range: str = "unit"
    classes: list[str] | None = None
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    levels: int | None = None

    @property
    def x_shape(self) -> list[int]:
        return list(self.train.x.shape[1:])


def split_off(train: Split, fraction: float) -> tuple[Split, Split]:
    """A random (fixed-seed) fraction of train as validation; returns (train, valid)."""
    n_valid = max(1, round(len(train) * fraction))
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(VALID_SEED))
    return train.subset(perm[n_valid:]), train.subset(perm[:n_valid])


def dynamic_binarize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x ~ Bernoulli(pixel intensity), drawn afresh each call (Salakhutdinov & Murray 2008)."""
    return torch.bernoulli(x, generator=generator)
