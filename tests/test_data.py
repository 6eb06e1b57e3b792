"""Named datasets read from ../shared/datasets, and the file-format readers they rely on."""

from __future__ import annotations

import dataclasses
import gzip
import struct
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import scipy.io
import torch

import vaelab
import vaelab.training
from tests.conftest import tiny_config
from vaelab.config import DataConfig
from vaelab.data import Data, dynamic_binarize, load_data
from vaelab.data.download import fetch_part
from vaelab.data.formats import read_amat, read_idx, read_mat, read_npy
from vaelab.data.named import (
    BINARIZED_MNIST,
    DATASETS,
    dataset_table,
    load_digits,
    load_dsprites,
    load_frey_faces,
)
from vaelab.errors import VaelabError


@pytest.fixture(autouse=True)
def no_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VAELAB_DATA", raising=False)


def assert_matches_its_table_entry(data: Data) -> None:
    """What `vaelab datasets` says without reading the files is what loading them gives."""
    info = DATASETS[data.name]
    splits = {"train": len(data.train), "test": len(data.test)}
    if data.valid is not None:
        splits["valid"] = len(data.valid)
    assert splits == info.splits and data.x_shape == list(info.x_shape)
    assert (data.value_range, data.levels, data.defaults) == (info.value_range, info.levels, info.defaults)
    assert data.classes == (None if info.classes is None else list(info.classes))
    if data.train.y is not None:
        assert int(data.train.y.max()) + 1 == len(data.classes)
    if data.levels is not None:  # every value is k / (levels - 1), k = 0 .. levels - 1
        grid = data.train.x[:500] * (data.levels - 1)
        k = grid.round()
        assert float((grid - k).abs().max()) < 1e-3 and k.min() >= 0 and k.max() <= data.levels - 1


def test_digits_and_its_table_entry() -> None:
    data = load_digits()
    assert_matches_its_table_entry(data)
    assert data.levels == 17 and len(torch.unique(data.train.x)) == 17  # 0/16 .. 16/16 all occur
    data.defaults["model"]["latent_dim"] = 99  # each Data gets its own copy of the defaults
    assert DATASETS["digits"].defaults["model"]["latent_dim"] == 8
    assert [info.name for info in dataset_table()] == list(DATASETS)
    for info in dataset_table():
        assert info.description and "\n" not in info.description
        assert info.defaults.keys() <= {"model", "train"}


def test_mnist_splits_through_load_data(shared_datasets: Path) -> None:
    full = load_data(DataConfig(name="mnist", data_dir=str(shared_datasets), valid_fraction=0))
    assert_matches_its_table_entry(full)  # train is the official 60000, no valid split
    assert full.levels == 256 and len(torch.bincount((full.test.x * 255).round().int().flatten())) == 256
    assert full.defaults["model"] == {"hidden": [400, 400], "latent_dim": 20, "likelihood": "bernoulli"}
    assert full.defaults["train"] == {"epochs": 20, "batch_size": 128}
    x = full.train.x
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1
    assert abs(float(x.mean()) - 0.1307) < 1e-3  # the MNIST mean everyone normalises with
    assert full.test.y is not None and torch.bincount(full.test.y).tolist()[:3] == [980, 1135, 1032]

    # A validation fraction comes out of train (reusing the arrays read above: reading MNIST
    # again would only repeat the same code, slowly).
    copy = dataclasses.replace(DATASETS["mnist"], load=lambda _: dataclasses.replace(full))
    with patch.dict(DATASETS, {"mnist": copy}):
        data = load_data(DataConfig(name="mnist", data_dir=str(shared_datasets), valid_fraction=0.1))
    assert data.valid is not None
    assert (len(data.train), len(data.valid), len(data.test)) == (54000, 6000, 10000)
    torch.testing.assert_close(data.train.x.sum() + data.valid.x.sum(), x.sum())  # a partition


def test_frey_faces_from_npy_or_mat(shared_datasets: Path, tmp_path: Path) -> None:
    data = load_frey_faces(str(shared_datasets))
    assert_matches_its_table_entry(data)
    assert (len(data.train), len(data.test), data.x_shape) == (1565, 400, [1, 28, 20])
    assert np.load(shared_datasets / "frey_faces" / "frey_faces.npy").dtype == np.uint8
    assert data.levels == 256
    assert data.value_range == "unit" and data.train.y is None
    assert data.defaults["model"]["likelihood"] == "gaussian"

    faces = np.load(shared_datasets / "frey_faces" / "frey_faces.npy")
    scipy.io.savemat(tmp_path / "frey_rawface.mat", {"ff": faces.T})  # Roweis's layout (560, 1965)
    from_mat = load_frey_faces(str(tmp_path))
    assert torch.equal(from_mat.test.x, data.test.x)  # same split from either file
    first = from_mat.train.x[0, 0] * 255  # (28, 20), row-major as in the original
    assert torch.allclose(first.round(), first, atol=1e-3)


def test_binarized_mnist_official_validation_split(shared_datasets: Path) -> None:
    data = load_data(DataConfig(name="binarized-mnist", data_dir=str(shared_datasets)))
    assert_matches_its_table_entry(data)
    assert data.valid is not None and data.levels == 2
    assert (len(data.train), len(data.valid), len(data.test)) == (50000, 10000, 10000)
    assert data.value_range == "binary" and data.train.y is None
    assert set(torch.unique(data.test.x).tolist()) == {0.0, 1.0}


def test_binarized_mnist_accepts_amat_named_matlab_files(shared_datasets: Path, tmp_path: Path) -> None:
    """Some copies (the ARM repository's) are MATLAB files named .amat."""
    (tmp_path / "binarized_mnist_valid.amat").symlink_to(
        shared_datasets / "binarized_mnist" / "binarized_mnist_valid.mat")
    valid = fetch_part(BINARIZED_MNIST, BINARIZED_MNIST.parts["valid"], str(tmp_path))
    assert valid.shape == (10000, 784)


def test_dsprites_reads_only_the_arrays_it_needs(shared_datasets: Path) -> None:
    data = load_dsprites(str(shared_datasets))  # the archive's pickled `metadata` is never loaded
    assert_matches_its_table_entry(data)
    assert (len(data.train), len(data.test), data.x_shape) == (18000, 2000, [1, 64, 64])
    assert data.value_range == "binary" and data.classes == ["square", "ellipse", "heart"]
    assert data.train.y is not None and set(data.train.y.tolist()) == {0, 1, 2}


def test_dsprites_has_no_download_source(tmp_path: Path) -> None:
    with pytest.raises(VaelabError, match="knows no download source.*holding dsprites_subset.npz, or"):
        load_dsprites(str(tmp_path))


def test_every_named_dataset_is_registered() -> None:
    assert {"digits", "mnist", "fashion-mnist", "frey-faces", "binarized-mnist", "dsprites"} <= set(DATASETS)


def test_unknown_dataset_suggests_the_closest() -> None:
    with pytest.raises(VaelabError, match="did you mean 'fashion-mnist'"):
        load_data(DataConfig(name="fashion_mnist"))


# ---- binarization ------------------------------------------------------------------------------

def test_threshold_binarization() -> None:
    grey = load_data(DataConfig(name="digits"))
    data = load_data(DataConfig(name="digits", binarize="threshold"))
    assert (data.value_range, data.levels) == ("binary", 2)
    for split, grey_split in ((data.train, grey.train), (data.valid, grey.valid), (data.test, grey.test)):
        assert torch.equal(split.x, (grey_split.x > 0.5).float())


def test_dynamic_binarization_fixes_valid_and_test() -> None:
    grey = load_data(DataConfig(name="digits"))
    first = load_data(DataConfig(name="digits", binarize="dynamic"))
    again = load_data(DataConfig(name="digits", binarize="dynamic"))
    assert (first.value_range, first.levels) == ("binary", 2)  # what the model scores
    assert torch.equal(first.train.x, grey.train.x)  # the probabilities batches are drawn from
    for split in ("valid", "test"):
        x, x_again, p = getattr(first, split).x, getattr(again, split).x, getattr(grey, split).x
        assert torch.equal(x, x_again)  # the same draw on every load
        assert set(torch.unique(x).tolist()) == {0.0, 1.0}
        assert not x[p == 0].any() and x[p == 1].all()
        # one Bernoulli(p) draw per pixel: the share of ones matches sum(p) within 4 sigma
        mixed = (p > 0) & (p < 1)
        sd = float((p[mixed] * (1 - p[mixed])).sum().sqrt())
        assert abs(float(x[mixed].sum() - p[mixed].sum())) < 4 * sd


def test_dynamic_binarization_redraws_every_training_batch(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []  # (grey batch, binary batch) per step

    def recording(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        binary = dynamic_binarize(x, generator)
        seen.append((x.clone(), binary.clone()))
        return binary

    monkeypatch.setattr(vaelab.training, "dynamic_binarize", recording)
    config = tiny_config(epochs=2, batch_size=256)
    config.data.binarize = "dynamic"
    data = load_data(config.data)
    vaelab.train(config, tmp_path / "run", data=data, device="cpu", progress=False, figures=False)
    grey = data.train.x
    assert len(seen) == 2 * -(-len(grey) // 256)  # every step of both epochs
    # the same image met in each epoch: drawn afresh, from its own grey levels
    draws: dict[bytes, list[torch.Tensor]] = {}
    for x, binary in seen:
        assert set(torch.unique(binary).tolist()) <= {0.0, 1.0}
        assert not binary[x == 0].any() and binary[x == 1].all()
        for image, drawn in zip(x, binary, strict=True):
            draws.setdefault(image.numpy().tobytes(), []).append(drawn)
    twice = [d for d in draws.values() if len(d) == 2]
    assert len(twice) > 0.9 * len(grey)
    changed = sum(not torch.equal(a, b) for a, b in twice)
    assert changed > 0.9 * len(twice)


# ---- format readers ---------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def test_idx_round_trip_plain_and_gzipped(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "plain").write_bytes(idx_bytes(images))
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(idx_bytes(images)))
    assert np.array_equal(read_idx(tmp_path / "plain"), images)
    assert np.array_equal(read_idx(tmp_path / "zipped.gz"), images)


@pytest.mark.parametrize(("content", "message"), [
    (gzip.compress(idx_bytes(np.zeros((2, 3), np.uint8)))[:-12], "corrupt or truncated gzip"),
    (b"\x1f\x8b\x08\x00garbage", "corrupt or truncated gzip"),
    (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], "truncated or padded IDX file"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01x", "not an IDX file"),
    (b"", "not an IDX file"),
])
def test_idx_errors_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(VaelabError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_amat_text_parse(tmp_path: Path) -> None:
    path = tmp_path / "small.amat"
    path.write_text("0 1 1 0\n1 1 0 0 \n\n0 0 0 1\n")  # a trailing blank and an empty line are fine
    assert read_amat(path).tolist() == [[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]]


@pytest.mark.parametrize(("text", "message"), [
    ("0 1 1 0\n1 1 0\n", "row 2 has 3 values, row 1 has 4"),
    ("0 1 2 0\n", "not a binary .amat file"),
    ("0 11 0\n", "not a binary .amat file"),
    ("0.0 1.0\n", "not a binary .amat file"),
    ("\n\n", "empty .amat file"),
])
def test_amat_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.amat"
    path.write_text(text)
    with pytest.raises(VaelabError, match=message):
        read_amat(path)


def test_mat_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"X": np.ones((3, 4), np.uint8)})
    assert read_mat(good, "X").shape == (3, 4)
    with pytest.raises(VaelabError, match=r"no variable 'ff' .*\['X'\]"):
        read_mat(good, "ff")
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(good.read_bytes()[:150])
    with pytest.raises(VaelabError, match=f"{truncated}: corrupt or truncated MATLAB file"):
        read_mat(truncated, "X")
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(VaelabError, match="garbage.mat"):
        read_mat(garbage, "X")


def test_npy_never_unpickles(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(VaelabError, match="pickled"):
        read_npy(path)


def test_truncated_npy(tmp_path: Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, np.ones((100, 10)))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(VaelabError, match=f"{path}: corrupt or truncated .npy"):
        read_npy(path)


def test_npy_without_numpy_header(tmp_path: Path) -> None:
    path = tmp_path / "text.npy"
    path.write_text("1 2 3")
    with pytest.raises(VaelabError, match=f"{path}: not a .npy file"):
        read_npy(path)
