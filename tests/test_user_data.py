"""User data: arrays, tables and image folders, round trips and each bad input (issue 6)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vaelab.config import DataConfig
from vaelab.data import load_data
from vaelab.data.files import load_path
from vaelab.errors import VaelabError, VaelabWarning


def load(path: Path, **config: object) -> object:
    return load_data(DataConfig(name=str(path), **config))  # type: ignore[arg-type]


def all_x(data: object) -> torch.Tensor:
    splits = [data.train, data.valid, data.test]  # type: ignore[attr-defined]
    return torch.cat([s.x for s in splits if s is not None])


# ---- arrays -------------------------------------------------------------------------------------

SHAPES = st.sampled_from([(20, 7), (20, 5, 6), (20, 1, 4, 4), (20, 3, 4, 5), (20, 6, 5, 3)])
DTYPES = st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_])


@settings(max_examples=25, deadline=None)
@given(shape=SHAPES, dtype=DTYPES, seed=st.integers(0, 2**16))
def test_npy_round_trip(shape: tuple[int, ...], dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    array = (rng.random(shape) * (255 if dtype in (np.uint8, np.int64) else 1)).astype(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, array)
        data = load_path(path, DataConfig())
    expected = {2: list(shape[1:]), 3: [1, *shape[1:]], 4: list(shape[1:])}[len(shape)]
    if shape == (20, 6, 5, 3):
        expected = [3, 6, 5]  # channels-last is moved to the front
    assert data.x_shape == expected
    assert len(data.train) + len(data.test) == 20 and len(data.test) == 2
    x = torch.cat([data.train.x, data.test.x])
    assert x.dtype == torch.float32
    scale = 255.0 if dtype == np.uint8 else 1.0
    assert torch.allclose(x.sum(), torch.tensor(float(array.astype(np.float64).sum() / scale)), rtol=1e-4)
    if dtype == np.bool_:
        assert data.value_range == "binary"
    elif dtype == np.int64:
        assert data.value_range in ("real", "binary")
    else:
        assert data.value_range in ("unit", "binary")


@settings(max_examples=15, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=6).filter(lambda s: len(s) in (1, 5, 6)))
def test_npy_of_the_wrong_rank(shape: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.npy"
        np.save(path, np.zeros(shape, np.float32))
        with pytest.raises(VaelabError, match=r"x.npy: expected an array of shape \(N, D\)"):
            load_path(path, DataConfig())


def test_value_range_is_decided_from_the_values(tmp_path: Path) -> None:
    for values, expected in (([0, 1], "binary"), ([0, 0.5, 1], "unit"), ([-1, 2], "real")):
        np.save(tmp_path / "x.npy", np.resize(np.array(values, np.float32), (30, 4)))
        assert load_path(tmp_path / "x.npy", DataConfig()).value_range == expected
    data = load_path(tmp_path / "x.npy", DataConfig())
    assert data.defaults["model"]["likelihood"] == "gaussian-global"


RNG = np.random.default_rng(5)
LEVEL_CASES = [  # (array, levels): 2 for binary, 256 / 65536 for 8- / 16-bit values, else None
    (RNG.integers(0, 256, (30, 6), dtype=np.uint8), 256),
    (RNG.integers(0, 256, (30, 6)).astype(np.float32) / 255, 256),  # 8-bit images saved as floats
    (RNG.integers(0, 65536, (30, 6)).astype(np.float64) / 65535, 65536),
    (RNG.integers(0, 2, (30, 6)).astype(np.uint8) * 255, 2),  # uint8, but only black and white
    (RNG.integers(0, 2, (30, 6)).astype(bool), 2),
    (RNG.random((30, 6)).astype(np.float32), None),
    (RNG.integers(0, 17, (30, 6)) / 16, None),  # a grid, but not one of the recognised ones
    (RNG.integers(0, 256, (30, 6)).astype(np.int64), None),  # not scaled: real values 0..255
]


@pytest.mark.parametrize(("array", "levels"), LEVEL_CASES)
def test_levels_of_arrays(tmp_path: Path, array: np.ndarray, levels: int | None) -> None:
    np.save(tmp_path / "x.npy", array)
    data = load_path(tmp_path / "x.npy", DataConfig())
    assert data.levels == levels
    if levels is not None:  # every value is k / (levels - 1)
        grid = all_x(data) * (levels - 1)
        assert float((grid - grid.round()).abs().max()) < 1e-2
        assert len(np.unique(array)) <= levels


def test_levels_after_binarization(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", RNG.integers(0, 256, (30, 6), dtype=np.uint8))
    for binarize in ("threshold", "dynamic"):
        data = load(tmp_path / "x.npy", binarize=binarize)
        assert (data.value_range, data.levels) == ("binary", 2)


# ---- flat vectors that are images ----------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv"])
@pytest.mark.parametrize("image_shape", [[3, 4], [1, 3, 4], [3, 2, 2]])
def test_flat_vectors_become_images(tmp_path: Path, suffix: str, image_shape: list[int]) -> None:
    x = np.arange(20 * 12, dtype=np.float32).reshape(20, 12) / 240  # row i holds i*12 .. i*12+11
    path = tmp_path / f"flat{suffix}"
    if suffix == ".npy":
        np.save(path, x)
    elif suffix == ".npz":
        np.savez(path, x=x, y=np.arange(20) % 2)
    else:
        path.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in x))
    data = load(path, image_shape=image_shape, valid_fraction=0.2)
    shape = image_shape if len(image_shape) == 3 else [1, *image_shape]
    assert data.x_shape == shape
    for split in (data.train, data.valid, data.test):
        assert split.x.shape[1:] == tuple(shape)
        for image in split.x:  # each image is its own row, in C order
            row = int(round(float(image.flatten()[0]) * 240)) // 12
            np.testing.assert_allclose(image.numpy(), x[row].reshape(shape), rtol=1e-6)


def test_image_shape_that_does_not_fit(tmp_path: Path) -> None:
    np.save(tmp_path / "flat.npy", np.zeros((10, 12), np.float32))
    with pytest.raises(VaelabError, match=r"data.image_shape \[5, 5\] holds 25 values, but each "
                                          r"input of .*flat.npy has D = 12; .* product is 12") as error:
        load(tmp_path / "flat.npy", image_shape=[5, 5])
    assert "\n" not in str(error.value)
    np.save(tmp_path / "images.npy", np.zeros((10, 3, 4), np.float32))
    with pytest.raises(VaelabError, match=r"data.image_shape \[4, 3\] is for flat vectors, but .*images.npy "
                                          r"already holds images of shape \[1, 3, 4\]"):
        load(tmp_path / "images.npy", image_shape=[4, 3])
    assert load(tmp_path / "images.npy", image_shape=[3, 4]).x_shape == [1, 3, 4]  # the same: fine


def test_npz_with_labels_and_validation_split(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((50, 2, 3, 3)).astype(np.float32)
    y = np.repeat([3, 7], 25)
    np.savez(tmp_path / "d.npz", images=x, labels=y)
    data = load(tmp_path / "d.npz", valid_fraction=0.2)
    assert (len(data.train), len(data.valid), len(data.test)) == (36, 9, 5)
    assert data.classes == ["3", "7"]  # labels become indices into classes
    y_all = torch.cat([data.train.y, data.valid.y, data.test.y])
    assert sorted(y_all.tolist()) == [0] * 25 + [1] * 25
    # each x still carries its own label
    index = {tuple(row.flatten().tolist()): label for row, label in zip(x, y, strict=True)}
    for row, label in zip(data.test.x, data.test.y, strict=True):
        assert data.classes[label] == str(index[tuple(row.flatten().tolist())])


def test_npz_with_label_names(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 4)), y=np.array(["cat", "dog"] * 5))
    assert load_path(tmp_path / "d.npz", DataConfig()).classes == ["cat", "dog"]


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.zeros((10, 4)), "y": np.zeros(9)}, "9 labels for 10 examples"),
    ({"x": np.zeros((10, 4)), "y": np.zeros((10, 2))}, r"labels must be one per example, shape \(10,\)"),
    ({"x": np.zeros((10, 4)), "y": np.full(10, np.nan)}, "labels hold NaN/inf"),
    ({"x": np.zeros((10, 4)), "y": np.linspace(0, 1, 10)}, "labels must be whole numbers"),
    ({"x": np.zeros((10, 4)), "y": np.zeros(10, np.complex64)}, "labels must be whole numbers or names"),
    ({"data": np.zeros((10, 4))}, r"no inputs found; expected an array named x or images or imgs .*data"),
    ({"x": np.array([["a", "b"]] * 5)}, "expected a numeric array"),
    ({"x": np.zeros((0, 4))}, "the array is empty"),
    ({"x": np.zeros((2, 4))}, "holds 2 examples"),
    ({"x": np.array([[0.5, np.inf]] * 5)}, "holds 5 NaN/inf values"),
    ({"x": np.array([[0.5, np.nan]] * 5)}, "holds 5 NaN/inf values"),
    ({"x": np.full((5, 2), 1e300)}, "too large for float32"),
])
def test_bad_npz(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(VaelabError, match=message) as error:
        load(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_corrupt_and_truncated_npz(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=np.random.default_rng(0).random((100, 10)))
    for name, content in (("truncated.npz", good.read_bytes()[:300]), ("garbage.npz", b"not a zip" * 20)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(VaelabError, match=f"{name}: corrupt or truncated .npz"):
            load(tmp_path / name)


def test_pickled_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, x=np.array([{"a": 1}] * 5, dtype=object))
    with pytest.raises(VaelabError, match="pickled"):
        load(path)


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(VaelabError, match="no such file or folder"):
        load(tmp_path / "nope.npy")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(VaelabError, match=r"unsupported file type '.txt'; expected .npy, .npz, .csv"):
        load(tmp_path / "notes.txt")


# ---- tables -------------------------------------------------------------------------------------

def test_csv_with_header_and_label_column(tmp_path: Path) -> None:
    rows = [f"{i * 0.1:.1f},{i},{'big' if i > 5 else 'small'},{-i}" for i in range(10)]
    (tmp_path / "t.csv").write_text("a,b,label,c\n" + "\n".join(rows) + "\n\n")
    data = load(tmp_path / "t.csv", valid_fraction=0)
    assert data.x_shape == [3] and data.classes == ["big", "small"] and data.value_range == "real"
    x, y = torch.cat([data.train.x, data.test.x]), torch.cat([data.train.y, data.test.y])
    assert sorted(x[:, 1].tolist()) == list(range(10))
    for row, label in zip(x, y, strict=True):
        assert data.classes[label] == ("big" if row[1] > 5 else "small")
        assert row[2] == -row[1]


def test_csv_without_header_and_tsv(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("\n".join("0,1,1" for _ in range(10)))
    data = load_path(tmp_path / "t.csv", DataConfig())
    assert data.x_shape == [3] and data.value_range == "binary" and data.train.y is None
    (tmp_path / "t.tsv").write_text("y\tv\n" + "\n".join(f"{i % 2}\t0.5" for i in range(10)))
    data = load_path(tmp_path / "t.tsv", DataConfig())
    assert data.x_shape == [1] and data.classes == ["0", "1"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty table"),
    ("\n\n", "empty table"),
    ("a,b\n", "has a header but no data rows"),
    ("a,b\n1,2\n3,x\n4,5\n", "line 3, column 'b': 'x' is not a number"),
    ("a,b\n1,2\n3,\n4,5\n", "line 3, column 'b': '' is not a number"),
    ("a,b\n1,2\n3,4,5\n", "line 3: 3 columns, expected 2"),
    ("label\ncat\ndog\nfox\n", "no numeric columns besides the label"),
    ("a,b\n1,2\n3,nan\n4,5\n", "holds 1 NaN/inf values"),
    ("a,label\n1,2\n3,4\n", "holds 2 examples"),
    ('a,b\n1,"2\n', "not a valid table"),
])
def test_bad_csv(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(VaelabError, match=message) as error:
        load(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_binary_csv_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(VaelabError, match="not a UTF-8 text table"):
        load(tmp_path / "bin.csv")


# ---- image folders ------------------------------------------------------------------------------

def save_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_with_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        for i in range(6):
            save_image(tmp_path / "pics" / label / f"{i}.png", rng.integers(0, 256, (8, 6, 3), np.uint8))
    save_image(tmp_path / "pics" / "dogs" / "nested" / "x.jpg", rng.integers(0, 256, (8, 6, 3), np.uint8))
    data = load(tmp_path / "pics", valid_fraction=0)
    assert data.name == "pics" and data.x_shape == [3, 8, 6] and data.classes == ["cats", "dogs"]
    y = torch.cat([data.train.y, data.test.y])
    assert torch.bincount(y).tolist() == [6, 7]
    assert data.value_range == "unit" and data.levels == 256


def test_grey_png_round_trip(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, (5, 7, 9), np.uint8)
    for i, image in enumerate(images):
        save_image(tmp_path / "grey" / f"{i}.png", image)
    data = load_path(tmp_path / "grey", DataConfig())
    x = torch.cat([data.train.x, data.test.x])
    assert data.x_shape == [1, 7, 9] and data.train.y is None and data.classes is None
    assert sorted((x * 255).round().sum((1, 2, 3)).tolist()) == sorted(images.sum((1, 2)).astype(float))


def test_mixed_sizes_are_resized_with_a_warning(tmp_path: Path) -> None:
    save_image(tmp_path / "a" / "0.png", np.zeros((10, 10), np.uint8))
    save_image(tmp_path / "a" / "1.png", np.zeros((20, 16), np.uint8))
    save_image(tmp_path / "a" / "2.png", np.zeros((10, 10), np.uint8))
    with pytest.warns(VaelabWarning, match=r"mixed sizes \(20x16\); resized them to 10x10"):
        assert load_path(tmp_path / "a", DataConfig()).x_shape == [1, 10, 10]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for a size: resizing is expected, no warning
        assert load_path(tmp_path / "a", DataConfig(image_size=[4, 5])).x_shape == [1, 4, 5]


def test_mixed_grey_and_colour_become_rgb(tmp_path: Path) -> None:
    save_image(tmp_path / "m" / "0.png", np.zeros((4, 4), np.uint8))
    save_image(tmp_path / "m" / "1.png", np.zeros((4, 4, 3), np.uint8))
    save_image(tmp_path / "m" / "2.png", np.full((4, 4, 4), 255, np.uint8))  # RGBA: alpha dropped
    with pytest.warns(VaelabWarning, match="grey ones were made RGB"):
        assert load_path(tmp_path / "m", DataConfig()).x_shape == [3, 4, 4]


def test_16_bit_grey_png(tmp_path: Path) -> None:
    array = np.full((4, 4), 65535, np.uint16)
    array[0, 0] = 0
    for i in range(3):
        (tmp_path / "deep").mkdir(exist_ok=True)
        Image.fromarray(array).save(tmp_path / "deep" / f"{i}.png")
    data = load_path(tmp_path / "deep", DataConfig())
    assert data.value_range == "binary" and data.levels == 2 and data.x_shape == [1, 4, 4]
    array[1, 1] = 1  # one step of 1 / 65535
    Image.fromarray(array).save(tmp_path / "deep" / "0.png")
    data = load_path(tmp_path / "deep", DataConfig())
    assert data.value_range == "unit" and data.levels == 65536
    assert float(all_x(data).min(0).values[0, 1, 1]) == pytest.approx(1 / 65535, rel=1e-6)


def test_non_images_are_skipped_with_a_warning(tmp_path: Path) -> None:
    for i in range(3):
        save_image(tmp_path / "f" / f"{i}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "f" / "notes.txt").write_text("not an image")
    (tmp_path / "f" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "f" / ".DS_Store").write_bytes(b"hidden files are not even considered")
    with pytest.warns(VaelabWarning, match="skipped 2 files that are not readable images: broken.png, notes"):
        data = load_path(tmp_path / "f", DataConfig())
    assert len(data.train) + len(data.test) == 3


def test_loose_files_and_empty_class_folders_are_ignored_with_warnings(tmp_path: Path) -> None:
    for i in range(3):
        save_image(tmp_path / "c" / "ones" / f"{i}.png", np.ones((4, 4), np.uint8))
    save_image(tmp_path / "c" / "loose.png", np.ones((4, 4), np.uint8))
    (tmp_path / "c" / "empty").mkdir()
    with pytest.warns(VaelabWarning) as record:
        data = load_path(tmp_path / "c", DataConfig())
    messages = " ".join(str(w.message) for w in record)
    assert "ignored 1 files outside the class sub-folders: loose.png" in messages
    assert "ignored 1 class folders without readable images: empty" in messages
    assert data.classes == ["ones"]


def test_empty_folder_and_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VaelabError, match="empty: no files; expected PNG/JPEG images"):
        load(tmp_path / "empty")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("a")
    with pytest.warns(VaelabWarning), pytest.raises(VaelabError, match=r"no readable images \(PNG/JPEG\)"):
        load(tmp_path / "texts")
