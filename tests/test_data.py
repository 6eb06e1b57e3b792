"""Named datasets read from ../shared/datasets, and the file-format readers they rely on."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
import scipy.io
import torch

from vaelab.config import DataConfig
from vaelab.data import Data, Split, load_data
from vaelab.data.download import fetch_part
from vaelab.data.formats import read_amat, read_idx, read_mat, read_npy
from vaelab.data.named import BINARIZED_MNIST, DATASETS, load_dsprites, load_frey_faces
from vaelab.errors import VaelabError


@pytest.fixture(autouse=True)
def no_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VAELAB_DATA", raising=False)


def test_mnist_splits_through_load_data(shared_datasets: Path) -> None:
    data = load_data(DataConfig(name="mnist", data_dir=str(shared_datasets), valid_fraction=0.1))
    assert data.valid is not None
    assert (len(data.train), len(data.valid), len(data.test)) == (54000, 6000, 10000)
    assert data.x_shape == [1, 28, 28] and data.value_range == "unit"
    assert data.classes == [str(i) for i in range(10)]
    assert data.defaults["model"] == {"hidden": [400, 400], "latent_dim": 20, "likelihood": "bernoulli"}
    assert data.defaults["train"] == {"epochs": 20, "batch_size": 128}
    x = torch.cat([data.train.x, data.valid.x])
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1
    assert abs(float(x.mean()) - 0.1307) < 1e-3  # the MNIST mean everyone normalises with
    assert data.test.y is not None and torch.bincount(data.test.y).tolist()[:3] == [980, 1135, 1032]

    # Without a validation fraction, train is the full official 60000 (reusing the arrays read
    # above: reading MNIST again would only repeat the same code, slowly).
    full = Data(data.name, Split(torch.cat([data.train.x, data.valid.x])), data.test)
    with patch.dict(DATASETS, {"mnist": lambda data_dir: full}):
        data = load_data(DataConfig(name="mnist", data_dir=str(shared_datasets), valid_fraction=0))
    assert (len(data.train), len(data.test), data.valid) == (60000, 10000, None)


def test_frey_faces_from_npy_or_mat(shared_datasets: Path, tmp_path: Path) -> None:
    data = load_frey_faces(str(shared_datasets))
    assert (len(data.train), len(data.test), data.x_shape) == (1565, 400, [1, 28, 20])
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
    assert data.valid is not None
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
