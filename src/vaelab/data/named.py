"""Named datasets: where their files are found, how they are read, what defaults suit them.

Resolution order for files (DESIGN.md): an explicit data_dir (or $VAELAB_DATA), the user cache,
known system locations, then a checksum-verified download into the cache.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch

from vaelab.data import Data, Split
from vaelab.errors import VaelabError


def load_digits(data_dir: str | None = None) -> Data:
    """scikit-learn's 8x8 digits (1797 images, 17 grey levels), shipped inside scikit-learn.

    There is no official split: a fixed 80/20 train/test split of a fixed permutation.
    """
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_test = len(x) // 5
    test, train = perm[:n_test], perm[n_test:]
    return Data(
        name="digits", train=Split(x[train], y[train]), test=Split(x[test], y[test]),
        value_range="unit", classes=[str(i) for i in range(10)],
        defaults={"model": {"hidden": [128, 128], "latent_dim": 8},
                  "train": {"epochs": 100, "batch_size": 64}},
    )


DATASETS: dict[str, Callable[[str | None], Data]] = {
    "digits": load_digits,
}


def load_named(name: str, data_dir: str | None) -> Data:
    return DATASETS[name](data_dir)


def suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(DATASETS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{hint}; known datasets: {', '.join(DATASETS)}, or a path to .npy/.npz or an image folder"


__all__ = ["DATASETS", "VaelabError", "load_named", "suggest"]
