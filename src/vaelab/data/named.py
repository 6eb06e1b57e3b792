"""Named datasets: their files, checksums and sources, how they are split, what defaults suit them.

Finding the files (data_dir / $VAELAB_DATA, the user cache, system folders, then a verified
download) is `vaelab.data.download`'s job; reading each file format is `vaelab.data.formats`'.
Each loader here turns the verified uint8 arrays into a `Data` with the splits papers use.
`DATASETS` (at the end) describes every dataset without reading its files: what
`vaelab datasets` lists, and where each loader takes its value range, class names and defaults.
"""

from __future__ import annotations

import copy
import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vaelab.data.download import Part, Source, fetch
from vaelab.data.formats import read_amat, read_idx, read_mat, read_npy, read_npz_array
from vaelab.data.splits import Data, Split
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
    return _data("digits", Split(x[train], y[train]), Split(x[test], y[test]))


# ---- MNIST and Fashion-MNIST: four IDX files each -------------------------------------------

def _idx_part(name: str, shape: tuple[int, ...], sha256: str, md5: str) -> Part:
    # The uncompressed file (as some archives unpack it) is accepted too.
    return Part({f"{name}.gz": read_idx, name: read_idx}, shape, sha256, md5)


MNIST = Source(
    name="mnist",
    folder="mnist",
    parts={
        "train_x": _idx_part("train-images-idx3-ubyte", (60000, 28, 28),
                             "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
                             "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        "train_y": _idx_part("train-labels-idx1-ubyte", (60000,),
                             "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
                             "d53e105ee54ea40749a09fcbcd1e9432"),
        "test_x": _idx_part("t10k-images-idx3-ubyte", (10000, 28, 28),
                            "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
                            "9fb629c4189551a2d022fa330f9573f3"),
        "test_y": _idx_part("t10k-labels-idx1-ubyte", (10000,),
                            "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
                            "ec29112dd5afa0611ce80d1b7f02629c"),
    },
    # The mirrors torchvision uses, in its order.
    urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
)

FASHION_MNIST = Source(
    name="fashion-mnist",
    folder="fashion_mnist",
    # Content checksums from Debian's package (recompressed .gz, same decompressed bytes); the
    # MD5s are those of the official .gz files (Zalando's README, torchvision).
    parts={
        "train_x": _idx_part("train-images-idx3-ubyte", (60000, 28, 28),
                             "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
                             "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train_y": _idx_part("train-labels-idx1-ubyte", (60000,),
                             "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
                             "25c81989df183df01b3e8a0aad5dffbe"),
        "test_x": _idx_part("t10k-images-idx3-ubyte", (10000, 28, 28),
                            "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
                            "bef4ecab320f06d8554ea6380940ec79"),
        "test_y": _idx_part("t10k-labels-idx1-ubyte", (10000,),
                            "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
                            "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian: dataset-fashion-mnist
)

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def _load_idx_dataset(source: Source, data_dir: str | None) -> Data:
    arrays = fetch(source, data_dir)
    return _data(source.name, Split(_images(arrays["train_x"]), _labels(arrays["train_y"])),
                 Split(_images(arrays["test_x"]), _labels(arrays["test_y"])))


def load_mnist(data_dir: str | None = None) -> Data:
    """MNIST: 60000 train / 10000 test 28x28 grey digits in [0, 1] (uint8 / 255), with labels."""
    return _load_idx_dataset(MNIST, data_dir)


def load_fashion_mnist(data_dir: str | None = None) -> Data:
    """Fashion-MNIST: 60000 train / 10000 test 28x28 grey clothing images in [0, 1], 10 classes."""
    return _load_idx_dataset(FASHION_MNIST, data_dir)


# ---- Frey faces: 1965 images of 28x20 ---------------------------------------------------------

FREY_FACES = Source(
    name="frey-faces",
    folder="frey_faces",
    # Roweis's frey_rawface.mat holds `ff` as 560 x 1965 (one image per column); Part.read
    # transposes it. frey_faces.npy is the same array stored (1965, 560).
    parts={"x": Part({"frey_rawface.mat": functools.partial(read_mat, key="ff"),
                      "frey_faces.npy": read_npy},
                     (1965, 560), "2438ba4f0d2a6bd8bac43de756141eaa33c8d248dd613d464bdb1210d9b7af78")},
    urls=("https://cs.nyu.edu/~roweis/data/",),
)
FREY_TEST = 400  # there is no official split: a fixed permutation, the last 400 held out
FREY_SEED = 0


def load_frey_faces(data_dir: str | None = None) -> Data:
    """Frey faces: 1965 28x20 grey images of one face in [0, 1]; a fixed 1565/400 train/test split."""
    x = _images(fetch(FREY_FACES, data_dir)["x"].reshape(-1, 28, 20))  # (1965, 1, 28, 20)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(FREY_SEED))
    train, test = perm[:-FREY_TEST], perm[-FREY_TEST:]
    return _data("frey-faces", Split(x[train]), Split(x[test]))


# ---- Binarized MNIST: the fixed binarization of Larochelle & Murray (2011) --------------------

def _amat_part(split: str, n: int, sha256: str) -> Part:
    return Part({f"binarized_mnist_{split}.amat": read_amat,
                 f"binarized_mnist_{split}.mat": functools.partial(read_mat, key="X")},
                (n, 784), sha256)


BINARIZED_MNIST = Source(
    name="binarized-mnist",
    folder="binarized_mnist",
    parts={
        "train": _amat_part("train", 50000,
                            "43490d4d6ac9002727af4426d8748609fdb7e4094fa65ad8d681ea60082a7a5a"),
        "valid": _amat_part("valid", 10000,
                            "069b4f0beb389b776478c3e872b4df71c95ac4be64d7cbe6d32e24ebac8e6d5e"),
        "test": _amat_part("test", 10000,
                           "ca0294c3b8d984c7a1dc891015a8eea6f37bae59a34e35ea0fc8c47110a8dd86"),
    },
    urls=("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",),
)


def load_binarized_mnist(data_dir: str | None = None) -> Data:
    """Binarized MNIST (fixed, Larochelle & Murray 2011): 50000/10000/10000 train/valid/test, 0/1.

    The official validation split becomes `Data.valid`; there are no labels.
    """
    arrays = fetch(BINARIZED_MNIST, data_dir)
    x = {split: torch.from_numpy(a.reshape(-1, 1, 28, 28)).float() for split, a in arrays.items()}
    return _data("binarized-mnist", Split(x["train"]), Split(x["test"]), valid=Split(x["valid"]))


# ---- dSprites (reduced): 64x64 binary sprites with known generating factors ------------------

DSPRITES = Source(
    name="dsprites",
    folder="dsprites",
    # The 20000-image random subset of deepmind/dsprites-dataset kept in the shared datasets
    # folder. Its `metadata` member is pickled: only `imgs` and `latents_classes` are read.
    parts={
        "x": Part({"dsprites_subset.npz": functools.partial(read_npz_array, key="imgs")},
                  (20000, 64, 64), "304d6fa0f3d0214402eb77ffce85565a6dbb26fa721c8a601d89b84c987665e1"),
        "factors": Part({"dsprites_subset.npz": functools.partial(read_npz_array, key="latents_classes")},
                        (20000, 5), "f055c6f466faf932b1d6e14b24905a64759bb8de2881c801231f3a0d3d24fc88"),
    },
    urls=(),  # the full 737280-image file is not supported yet: no download source
)
DSPRITES_TEST = 2000
DSPRITES_SEED = 0


def load_dsprites(data_dir: str | None = None) -> Data:
    """dSprites (a fixed 20000-image subset): 64x64 binary sprites; labels are the shape
    (square, ellipse, heart). No official split: a fixed 18000/2000 train/test split.
    """
    arrays = fetch(DSPRITES, data_dir)
    x = torch.from_numpy(arrays["x"]).float().unsqueeze(1)  # (N, 1, 64, 64), values 0/1
    y = _labels(arrays["factors"][:, 0])  # factors: (shape, scale, orientation, posX, posY)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(DSPRITES_SEED))
    train, test = perm[:-DSPRITES_TEST], perm[-DSPRITES_TEST:]
    return _data("dsprites", Split(x[train], y[train]), Split(x[test], y[test]))


# ---- shared helpers and the registry ---------------------------------------------------------

def _images(array: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [0, 1]."""
    return torch.from_numpy(array).float().div_(255.0).unsqueeze(1)


def _labels(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array.astype(np.int64))


def _data(name: str, train: Split, test: Split, valid: Split | None = None) -> Data:
    """A `Data` whose value range, levels, class names and defaults come from DATASETS[name]."""
    info = DATASETS[name]
    return Data(
        name=name, train=train, test=test, valid=valid, value_range=info.value_range,
        classes=None if info.classes is None else list(info.classes),
        defaults=copy.deepcopy(info.defaults), levels=info.levels,
    )


@dataclass(frozen=True)
class DatasetInfo:
    """A named dataset as `vaelab datasets` lists it: all known without reading its files.

    Attributes:
        name: what `--data` takes.
        description: one line: what the inputs are and where they come from.
        x_shape: the shape of one input, (C, H, W).
        splits: examples per split as the dataset ships ({"train": 60000, "test": 10000});
            without a "valid" split, `load_data` holds out data.valid_fraction of train.
        value_range: "binary" or "unit" (`Data.value_range`).
        levels: quantisation levels of the values (`Data.levels`).
        classes: the label names, or None for a dataset without labels.
        defaults: the model/train settings that suit it, by config section (`Data.defaults`);
            unset settings take these, then vaelab.config.GENERIC_DEFAULTS.
        source: its files, checksums and download addresses; None when a package ships it.
        load: reads it: load(data_dir) -> Data.
    """

    name: str
    description: str
    x_shape: tuple[int, ...]
    splits: dict[str, int]
    value_range: str
    levels: int | None
    classes: tuple[str, ...] | None
    defaults: dict[str, dict[str, Any]]
    source: Source | None
    load: Callable[[str | None], Data]


DIGIT_CLASSES = tuple(str(i) for i in range(10))
# 784-400-400-20 with a Bernoulli likelihood: the classic MNIST VAE (Kingma & Welling 2014 used
# one hidden layer; two is the common modern baseline).
MNIST_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"hidden": [400, 400], "latent_dim": 20, "likelihood": "bernoulli"},
    "train": {"epochs": 20, "batch_size": 128},
}

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo(
        name="digits", description="handwritten digits (UCI) that ship with scikit-learn: works offline",
        x_shape=(1, 8, 8), splits={"train": 1438, "test": 359}, value_range="unit", levels=17,
        classes=DIGIT_CLASSES, source=None, load=load_digits,
        defaults={"model": {"hidden": [128, 128], "latent_dim": 8},
                  "train": {"epochs": 100, "batch_size": 64}},
    ),
    DatasetInfo(
        name="mnist", description="handwritten digits (LeCun et al. 1998)",
        x_shape=(1, 28, 28), splits={"train": 60000, "test": 10000}, value_range="unit", levels=256,
        classes=DIGIT_CLASSES, source=MNIST, load=load_mnist, defaults=MNIST_DEFAULTS,
    ),
    DatasetInfo(
        name="fashion-mnist", description="Zalando's clothing images (Xiao et al. 2017)",
        x_shape=(1, 28, 28), splits={"train": 60000, "test": 10000}, value_range="unit", levels=256,
        classes=FASHION_CLASSES, source=FASHION_MNIST, load=load_fashion_mnist,
        defaults=MNIST_DEFAULTS,
    ),
    DatasetInfo(
        name="frey-faces", description="video frames of Brendan Frey's face (from Sam Roweis's page)",
        x_shape=(1, 28, 20), splits={"train": 1965 - FREY_TEST, "test": FREY_TEST},
        value_range="unit", levels=256, classes=None, source=FREY_FACES, load=load_frey_faces,
        # Kingma & Welling (2014) used 200 hidden units and a Gaussian decoder on Frey faces.
        defaults={"model": {"hidden": [200], "latent_dim": 10, "likelihood": "gaussian",
                            "obs_scale": 0.1},
                  "train": {"epochs": 100, "batch_size": 100}},
    ),
    DatasetInfo(
        name="binarized-mnist",
        description="MNIST binarized once, the fixed benchmark (Larochelle & Murray 2011)",
        x_shape=(1, 28, 28), splits={"train": 50000, "valid": 10000, "test": 10000},
        value_range="binary", levels=2, classes=None, source=BINARIZED_MNIST,
        load=load_binarized_mnist, defaults=MNIST_DEFAULTS,
    ),
    DatasetInfo(
        name="dsprites",
        description="2D shapes with known factors (Matthey et al. 2017), a fixed 20000-image "
                    "subset; labels: the shape",
        x_shape=(1, 64, 64), splits={"train": 20000 - DSPRITES_TEST, "test": DSPRITES_TEST},
        value_range="binary", levels=2, classes=("square", "ellipse", "heart"), source=DSPRITES,
        load=load_dsprites,
        # The beta-VAE paper's dSprites model is convolutional with 10 latents.
        defaults={"model": {"arch": "conv", "latent_dim": 10, "likelihood": "bernoulli"},
                  "train": {"epochs": 30, "batch_size": 64}},
    ),
)}


def dataset_table() -> list[DatasetInfo]:
    """Every named dataset, in the order `vaelab datasets` lists them."""
    return list(DATASETS.values())


def load_named(name: str, data_dir: str | None) -> Data:
    return DATASETS[name].load(data_dir)


def suggest(name: str) -> str:
    close = difflib.get_close_matches(name, list(DATASETS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    known = ", ".join(DATASETS)
    return f"{hint}; known datasets: {known}, or a path to a .npy/.npz/.csv file or an image folder"


__all__ = ["DATASETS", "DatasetInfo", "VaelabError", "dataset_table", "load_named", "suggest"]
