"""Data: named datasets, user arrays and image folders, as in-memory tensors with splits.

Everything lands in one `Data` object: float32 tensors x (N, *x_shape) and optional integer
labels y (N,), split into train / valid / test. Training indexes these tensors directly (no
per-sample DataLoader work), which is what makes small models fast on a CPU.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from vaelab.config import DataConfig
from vaelab.data.features import Codes, load_codes, sample_codes
from vaelab.data.files import load_path
from vaelab.data.named import DATASETS, load_named, suggest
from vaelab.data.splits import BINARIZE_SEED, VALID_SEED, Data, Split, dynamic_binarize, split_off
from vaelab.errors import VaelabError


def load_data(config: DataConfig) -> Data:
    """Loads the dataset `config.name` names (a dataset name or a file/folder path), split.

    Flat vectors (N, D) become images (N, C, H, W) when `config.image_shape` is set; then a
    validation split is held out and `config.binarize` applied (dynamic binarization draws
    valid/test once, with a fixed seed; training draws its batches afresh).

    With `config.features` (M1+M2), the data are the codes of that VAE run instead: its own
    splits, encoded (vaelab.data.features.load_codes).
    """
    if config.features:
        return load_codes(config)
    name = config.name
    if name in DATASETS:
        data = load_named(name, config.data_dir)
    elif Path(name).exists():
        data = load_path(Path(name), config)
    elif "/" in name or "." in name:
        raise VaelabError(f"data: no such file or folder: {name}")
    else:
        raise VaelabError(f"data: unknown dataset '{name}'{suggest(name)}")
    _check_finite(data)
    if config.image_shape is not None:
        data = _as_images(data, config.image_shape, name)
    if data.valid is None and config.valid_fraction > 0:
        data.train, data.valid = split_off(data.train, config.valid_fraction)
    if config.binarize == "threshold":
        data = _map_splits(data, lambda x: (x > 0.5).float())
    elif config.binarize == "dynamic":
        if data.value_range == "real":
            raise VaelabError(f"data: --binarize dynamic needs [0, 1] data; {name} is real-valued")
        gen = torch.Generator().manual_seed(BINARIZE_SEED)
        data.test = Split(torch.bernoulli(data.test.x, generator=gen), data.test.y)
        if data.valid is not None:
            data.valid = Split(torch.bernoulli(data.valid.x, generator=gen), data.valid.y)
    if config.binarize != "none":
        data.value_range, data.levels = "binary", 2
    return data


def _map_splits(data: Data, fn: Any) -> Data:
    data.train = Split(fn(data.train.x), data.train.y)
    data.test = Split(fn(data.test.x), data.test.y)
    if data.valid is not None:
        data.valid = Split(fn(data.valid.x), data.valid.y)
    return data


def _as_images(data: Data, image_shape: list[int], name: str) -> Data:
    """Flat inputs (N, D) reshaped to (N, C, H, W) by data.image_shape ([H, W] or [C, H, W]);
    `name` (the dataset or file) is what error messages name."""
    shape = [1, *image_shape] if len(image_shape) == 2 else list(image_shape)
    if data.x_shape == shape:
        return data
    if len(data.x_shape) != 1:
        raise VaelabError(
            f"data.image_shape {list(image_shape)} is for flat vectors, but {name} already "
            f"holds images of shape {data.x_shape}; remove data.image_shape"
        )
    d = data.x_shape[0]
    if math.prod(shape) != d:
        raise VaelabError(
            f"data.image_shape {list(image_shape)} holds {math.prod(shape)} values, but each input "
            f"of {name} has D = {d}; set data.image_shape to a shape whose product is {d}"
        )
    return _map_splits(data, lambda x: x.reshape(len(x), *shape))


def _check_finite(data: Data) -> None:
    for split_name, split in (("train", data.train), ("test", data.test), ("valid", data.valid)):
        # min/max propagate NaN, so this is exact and ~10x faster than isfinite(x).all()
        if split is not None and len(split) and not torch.isfinite(torch.stack(split.x.aminmax())).all():
            bad = int((~torch.isfinite(split.x)).sum())
            raise VaelabError(f"data: {data.name} {split_name} holds {bad} NaN/inf values")
        if split is not None and len(split) == 0:
            raise VaelabError(f"data: {data.name} has an empty {split_name} split")


__all__ = ["BINARIZE_SEED", "VALID_SEED", "Codes", "Data", "Split", "dynamic_binarize",
           "load_data", "sample_codes", "split_off"]
