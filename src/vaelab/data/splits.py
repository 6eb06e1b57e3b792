"""The containers of every dataset: `Split` (tensors x and labels y) and `Data` (the splits and
what the values are), and the two ways to split and binarize them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vaelab.errors import VaelabError

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


def keep_labels(split: Split, n: int, num_classes: int, seed: int) -> tuple[Split, Tensor]:
    """A copy of `split` whose labels are -1 (unknown) except for n examples, balanced over the
    classes (n // K of each, one more for the first n % K classes), drawn with `seed`.

    The semi-supervised setting of Kingma et al. (2014): 100 labels are 10 per MNIST class.
    Returns the split and the indices (n,) of the examples that keep their label.
    """
    if split.y is None or split.y.dim() != 1:
        raise VaelabError("data.labels: this dataset has no class labels to keep")
    if not num_classes <= n <= len(split):
        raise VaelabError(f"data.labels {n}: keep at least one label per class ({num_classes}) "
                          f"and at most the {len(split)} training examples")
    gen = torch.Generator().manual_seed(seed)
    kept = []
    for c in range(num_classes):
        members = (split.y == c).nonzero().flatten()
        want = n // num_classes + (1 if c < n % num_classes else 0)
        if len(members) < want:
            raise VaelabError(f"data.labels {n}: class {c} has only {len(members)} training "
                              f"examples, {want} are needed for a balanced draw")
        kept.append(members[torch.randperm(len(members), generator=gen)[:want]])
    index = torch.cat(kept).sort().values
    y = torch.full_like(split.y, -1)
    y[index] = split.y[index]
    return Split(split.x, y), index
