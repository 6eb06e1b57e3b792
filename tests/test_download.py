"""The real download and resolution code of named datasets, against a server on 127.0.0.1.

The served folders are built in tmp from ../shared/datasets (the `shared_datasets` fixture skips
when it is absent), in the layout mirrors use: `<mirror>/<dataset folder>/<file>`.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from http_server import serve

from vaelab.data.download import cache_root, fetch_part
from vaelab.data.named import BINARIZED_MNIST, FREY_FACES, MNIST, load_frey_faces, load_mnist
from vaelab.errors import VaelabError

LABELS = "train-labels-idx1-ubyte.gz"


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache in tmp, and no data dir, mirror or offline setting from the environment."""
    for name in ("VAELAB_DATA", "VAELAB_MIRROR", "VAELAB_OFFLINE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAELAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(src)


def cache_files(folder: str) -> list[str]:
    path = cache_root() / folder
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def test_mnist_downloads_verifies_and_is_cached(tmp_path: Path, shared_datasets: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    served = tmp_path / "served"
    for f in (shared_datasets / "mnist").glob("*.gz"):
        link(f, served / "mnist" / f.name)
    with serve(served) as server:
        monkeypatch.setenv("VAELAB_MIRROR", server.url)
        data = load_mnist()
        assert (len(data.train), len(data.test)) == (60000, 10000)
        assert sorted(server.requests) == sorted(f"/mnist/{f.name}" for f in (served / "mnist").iterdir())
        assert cache_files("mnist") == sorted(f.name for f in (served / "mnist").iterdir())

        again = fetch_part(MNIST, MNIST.parts["test_y"])  # from the cache: no new request
        assert len(server.requests) == 4
        assert np.array_equal(again, data.test.y.numpy())


def test_corrupt_and_truncated_copies_are_rejected_and_the_next_mirror_used(
    tmp_path: Path, shared_datasets: Path
) -> None:
    good = (shared_datasets / "mnist" / LABELS).read_bytes()
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0xFF
    for mirror, content in (("corrupt", bytes(corrupt)), ("truncated", good[: len(good) // 2]),
                            ("cut", good), ("good", good)):
        (tmp_path / "served" / mirror / "mnist").mkdir(parents=True)
        (tmp_path / "served" / mirror / "mnist" / LABELS).write_bytes(content)
    with serve(tmp_path / "served") as server:
        server.cut.add(f"/cut/mnist/{LABELS}")  # the connection drops half-way
        names = ["missing", "corrupt", "truncated", "cut", "good"]
        labels = fetch_part(MNIST, MNIST.parts["train_y"], mirrors=[f"{server.url}/{m}" for m in names])
        assert [r.split("/")[1] for r in server.requests] == names
    assert labels.shape == (60000,)
    assert (cache_root() / "mnist" / LABELS).read_bytes() == good
    assert cache_files("mnist") == [LABELS]  # no partial or rejected file left behind


def test_all_mirrors_failing_is_one_error_naming_each(tmp_path: Path, shared_datasets: Path) -> None:
    bad = tmp_path / "served" / "bad" / "mnist" / LABELS
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with serve(tmp_path / "served") as server:
        with pytest.raises(VaelabError) as error:
            fetch_part(MNIST, MNIST.parts["train_y"], mirrors=[f"{server.url}/bad", f"{server.url}/gone"])
    message = str(error.value)
    assert "\n" not in message
    assert f"{server.url}/bad/mnist/{LABELS}: MD5 mismatch" in message
    assert f"{server.url}/gone/mnist/{LABELS}: HTTP 404" in message
    assert "--data-dir" in message and "VAELAB_DATA" in message
    assert cache_files("mnist") == []


def test_content_checksum_rejects_a_download_without_published_md5(tmp_path: Path,
                                                                   shared_datasets: Path) -> None:
    faces = np.load(shared_datasets / "frey_faces" / "frey_faces.npy")
    faces[0, 0] ^= 1  # one grey level off in one pixel
    served = tmp_path / "served" / "frey_faces"
    served.mkdir(parents=True)
    scipy.io.savemat(served / "frey_rawface.mat", {"ff": faces.T})
    with serve(tmp_path / "served") as server:
        with pytest.raises(VaelabError, match="checksum mismatch"):
            fetch_part(FREY_FACES, FREY_FACES.parts["x"], mirrors=[server.url])
    assert cache_files("frey_faces") == []


def test_frey_faces_download_of_roweis_mat_file(tmp_path: Path, shared_datasets: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    faces = np.load(shared_datasets / "frey_faces" / "frey_faces.npy")
    served = tmp_path / "served" / "frey_faces"
    served.mkdir(parents=True)
    scipy.io.savemat(served / "frey_rawface.mat", {"ff": faces.T})  # (560, 1965), as Roweis stores it
    with serve(tmp_path / "served") as server:
        monkeypatch.setenv("VAELAB_MIRROR", server.url)
        data = load_frey_faces()
    assert (len(data.train), len(data.test), data.x_shape) == (1565, 400, [1, 28, 20])
    assert cache_files("frey_faces") == ["frey_rawface.mat"]
    all_x = np.concatenate([data.train.x.numpy(), data.test.x.numpy()]).reshape(1965, 560)
    assert np.allclose(np.sort(all_x.sum(1)), np.sort(faces.sum(1) / 255.0), atol=1e-3)


def amat_bytes(x: np.ndarray) -> bytes:
    """Larochelle's text form of a (N, D) 0/1 array: 0/1 separated by spaces, one row a line."""
    text = np.full((len(x), 2 * x.shape[1]), ord(" "), dtype=np.uint8)
    text[:, 0::2] = x + ord("0")
    text[:, -1] = ord("\n")
    return text.tobytes()


def test_binarized_mnist_amat_download_mixed_with_a_local_mat(tmp_path: Path, shared_datasets: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from vaelab.data.named import load_binarized_mnist

    source = shared_datasets / "binarized_mnist"
    served = tmp_path / "served" / "binarized_mnist"
    served.mkdir(parents=True)
    for split in ("valid", "test"):  # the real-size text files, made from the .mat arrays
        x = scipy.io.loadmat(source / f"binarized_mnist_{split}.mat")["X"]
        (served / f"binarized_mnist_{split}.amat").write_bytes(amat_bytes(x))
    local = tmp_path / "local"
    link(source / "binarized_mnist_train.mat", local / "binarized_mnist_train.mat")
    with serve(tmp_path / "served") as server:
        monkeypatch.setenv("VAELAB_MIRROR", server.url)
        data = load_binarized_mnist(str(local))
        assert sorted(server.requests) == ["/binarized_mnist/binarized_mnist_test.amat",
                                           "/binarized_mnist/binarized_mnist_valid.amat"]
    assert (len(data.train), len(data.valid), len(data.test)) == (50000, 10000, 10000)
    assert data.value_range == "binary"
    assert cache_files("binarized_mnist") == ["binarized_mnist_test.amat", "binarized_mnist_valid.amat"]


def test_data_dir_beats_cache_beats_download(tmp_path: Path, shared_datasets: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    part = MNIST.parts["train_y"]
    good = shared_datasets / "mnist" / LABELS
    # A cached copy that fails verification shows whether the cache was read.
    cached = cache_root() / "mnist" / LABELS
    cached.parent.mkdir(parents=True)
    labels = bytearray(gzip.decompress(good.read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10  # one label changed
    cached.write_bytes(gzip.compress(bytes(labels)))
    served = tmp_path / "served"
    link(good, served / "mnist" / LABELS)
    with serve(served) as server:
        mirrors = [server.url]
        link(good, tmp_path / "flat" / LABELS)  # <dir>/<file>
        assert fetch_part(MNIST, part, str(tmp_path / "flat"), mirrors).shape == (60000,)
        link(good, tmp_path / "nested" / "mnist" / LABELS)  # <dir>/<dataset folder>/<file>
        monkeypatch.setenv("VAELAB_DATA", str(tmp_path / "nested"))
        assert fetch_part(MNIST, part, None, mirrors).shape == (60000,)
        monkeypatch.delenv("VAELAB_DATA")
        with pytest.raises(VaelabError, match=f"{cached}: checksum mismatch"):
            fetch_part(MNIST, part, None, mirrors)  # the cache comes before the download
        cached.unlink()
        assert fetch_part(MNIST, part, None, mirrors).shape == (60000,)  # now downloaded
        assert server.requests == [f"/mnist/{LABELS}"]
        assert cached.read_bytes() == good.read_bytes()


def test_a_corrupt_local_file_is_an_error_naming_it(tmp_path: Path, shared_datasets: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    truncated = data_dir / LABELS
    truncated.write_bytes((shared_datasets / "mnist" / LABELS).read_bytes()[:5000])
    with pytest.raises(VaelabError, match=f"{truncated}: corrupt or truncated gzip"):
        fetch_part(MNIST, MNIST.parts["train_y"], str(data_dir), mirrors=["http://127.0.0.1:9"])


def test_offline_and_missing_says_where_it_looked_and_what_to_do(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    data_dir = tmp_path / "empty"
    data_dir.mkdir()
    with pytest.raises(VaelabError) as error:
        load_mnist(str(data_dir))
    message = str(error.value)
    assert "\n" not in message
    for expected in (str(data_dir), str(data_dir / "mnist"), str(cache_root() / "mnist"),
                     "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                     "--data-dir", "VAELAB_DATA", "VAELAB_OFFLINE"):
        assert expected in message


def test_missing_data_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(VaelabError, match="is not a folder"):
        load_mnist(str(tmp_path / "typo"))


def test_file_urls_are_mirrors_or_official() -> None:
    from vaelab.data.download import file_urls

    assert file_urls(MNIST, LABELS) == [
        f"https://ossci-datasets.s3.amazonaws.com/mnist/{LABELS}", f"http://yann.lecun.com/exdb/mnist/{LABELS}"
    ]
    assert file_urls(BINARIZED_MNIST, "x.amat", ["http://m/a/", "file:///b"]) == [
        "http://m/a/binarized_mnist/x.amat", "file:///b/binarized_mnist/x.amat"
    ]


def test_file_urls_mirror_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from vaelab.data.download import file_urls

    monkeypatch.setenv("VAELAB_MIRROR", "http://a, http://b")
    assert file_urls(MNIST, LABELS) == [f"http://a/mnist/{LABELS}", f"http://b/mnist/{LABELS}"]


def test_file_mirror_url(tmp_path: Path, shared_datasets: Path) -> None:
    """file:// mirrors go through the same download code (handy for a shared network folder)."""
    labels = fetch_part(MNIST, MNIST.parts["test_y"], mirrors=[shared_datasets.as_uri()])
    assert labels.shape == (10000,)
    assert cache_files("mnist") == ["t10k-labels-idx1-ubyte.gz"]


def test_a_leftover_partial_download_is_cleaned_up(tmp_path: Path, shared_datasets: Path) -> None:
    folder = cache_root() / "mnist"
    folder.mkdir(parents=True)
    stale = folder / f".{LABELS}.abc.part"
    stale.write_bytes(b"half a file")
    os.utime(stale, (0, 0))
    fetch_part(MNIST, MNIST.parts["train_y"], mirrors=[shared_datasets.as_uri()])
    assert cache_files("mnist") == [LABELS]


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian(monkeypatch: pytest.MonkeyPatch) -> None:
    from vaelab.data.named import load_fashion_mnist

    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    data = load_fashion_mnist()
    assert (len(data.train), len(data.test)) == (60000, 10000)
    assert data.classes is not None and data.classes[9] == "Ankle boot"
    assert cache_files("fashion_mnist") == []
