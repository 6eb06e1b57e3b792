"""User data: .npy/.npz arrays, CSV tables and image folders, as a `Data` with a fixed test split.

- `.npy`: images (N, H, W) or (N, C, H, W) (channels-last (N, H, W, C) with C = 1, 3 or 4 and
  H > 4 is moved to the front), or flat vectors (N, D).
- `.npz`: the inputs under `x` (or `images` / `imgs`), optional labels under `y` (or `labels`).
- `.csv` / `.tsv`: numeric columns, an optional header row, an optional label column named
  `label` or `y`.
- a folder of PNG/JPEG images, either all at the top or one sub-folder per class (labels are
  the sub-folder names; `classes` lists them sorted).

uint8 inputs are scaled to [0, 1]; `Data.levels` is 256 for them, for 8-bit image files and for
floats that are all k / 255 (see `_levels`). Flat vectors become images with data.image_shape
(`load_data`). Labels may be numbers or names; either way they become class
indices 0..K-1 into `Data.classes`. User data has no official test split, so a fixed 10% of it is
held out (seed TEST_SEED); `load_data` then takes the validation split from the rest.
Every problem is one `VaelabError` that names the file and says what was expected.
"""

from __future__ import annotations

import csv
import io
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vaelab.config import DataConfig
from vaelab.data.formats import read_npy
from vaelab.data.splits import Data, Split
from vaelab.errors import VaelabError, VaelabWarning

TEST_FRACTION = 0.1
TEST_SEED = 0
MIN_EXAMPLES = 3  # one each for train, validation and test
X_KEYS = ("x", "images", "imgs")
Y_KEYS = ("y", "labels")
LABEL_COLUMNS = ("label", "y")
SHOW = 5  # file names listed in a warning before "..."
GRID_LEVELS = (256, 65536)  # the quantisation grids `Data.levels` recognises in [0, 1] values
LEVELS_PEEK = 4096


def load_path(path: Path, config: DataConfig) -> Data:
    """Reads a user file or image folder into a `Data` with train and test splits.

    Args:
        path: a .npy, .npz, .csv or .tsv file, or a folder of images.
        config: `config.image_size` ([H, W]) is the size image folders are resized to.
    """
    classes = None
    if path.is_dir():
        x, y, classes = read_image_folder(path, config.image_size)
    else:
        suffix = path.suffix.lower()
        labels: np.ndarray | None
        if suffix == ".npy":
            array, labels = read_npy(path), None
        elif suffix == ".npz":
            array, labels = read_npz(path)
        elif suffix in (".csv", ".tsv"):
            array, labels = read_table(path, delimiter="\t" if suffix == ".tsv" else ",")
        else:
            raise VaelabError(
                f"{path}: unsupported file type '{path.suffix}'; expected .npy, .npz, .csv, .tsv "
                "or a folder of images"
            )
        x = as_inputs(array, path)
        y, classes = as_labels(labels, len(x), path) if labels is not None else (None, None)
    return split_test(path.name if path.is_dir() else path.stem, x, y, classes, path)


# ---- arrays -------------------------------------------------------------------------------------

def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs and optional labels from a .npz archive (keys `x`/`images`/`imgs`, `y`/`labels`)."""
    if not zipfile.is_zipfile(path):
        raise VaelabError(f"{path}: corrupt or truncated .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            x_key = next((k for k in X_KEYS if k in keys), None)
            if x_key is None:
                raise VaelabError(
                    f"{path}: no inputs found; expected an array named {' or '.join(X_KEYS)} "
                    f"(the archive holds: {', '.join(keys) or 'nothing'})"
                )
            y_key = next((k for k in Y_KEYS if k in keys), None)
            return archive[x_key], None if y_key is None else archive[y_key]
    except VaelabError:
        raise
    except ValueError as e:
        if "pickle" in str(e):
            raise VaelabError(f"{path}: holds Python objects (pickled); save numeric arrays") from None
        raise VaelabError(f"{path}: corrupt or truncated .npz file ({e})") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as e:
        raise VaelabError(f"{path}: corrupt or truncated .npz file ({e})") from None


def as_inputs(array: np.ndarray, path: Path) -> Tensor:
    """A float32 tensor (N, D) or (N, C, H, W) from a numeric array; uint8 is scaled to [0, 1]."""
    if array.dtype.kind not in "biuf":
        raise VaelabError(f"{path}: expected a numeric array, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]  # (N, H, W) -> (N, 1, H, W)
    elif array.ndim == 4 and array.shape[3] in (1, 3, 4) and array.shape[1] > 4:
        # (N, H, W, C) as PIL and TensorFlow write images: 1-4 channels last, and H > 4
        # rules out the channels-first reading (more than 4 channels is not an image).
        array = array.transpose(0, 3, 1, 2)
    elif array.ndim not in (2, 4):
        raise VaelabError(
            f"{path}: expected an array of shape (N, D), (N, H, W) or (N, C, H, W); "
            f"got shape {array.shape}"
        )
    if array.size == 0:
        raise VaelabError(f"{path}: the array is empty (shape {array.shape})")
    scale = 255.0 if array.dtype == np.uint8 else 1.0
    with np.errstate(over="ignore"):  # too-large values become inf, reported just below
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)) / scale
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        raise VaelabError(f"{path}: holds {bad} NaN/inf values (or numbers too large for float32)")
    return x


def as_labels(labels: np.ndarray, n: int, path: Path) -> tuple[Tensor, list[str]]:
    """Class indices (N,) int64 and the class names they index, from numbers or names."""
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise VaelabError(f"{path}: labels must be one per example, shape ({n},); got shape {labels.shape}")
    if len(labels) != n:
        raise VaelabError(f"{path}: {len(labels)} labels for {n} examples; expected one label per example")
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise VaelabError(f"{path}: labels hold NaN/inf values")
        fractional = labels[labels != np.round(labels)]
        if len(fractional):
            raise VaelabError(f"{path}: labels must be whole numbers or names; got {fractional[0]}")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "biuUS":
        raise VaelabError(f"{path}: labels must be whole numbers or names, got dtype {labels.dtype}")
    values, index = np.unique(labels, return_inverse=True)
    classes = [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]
    return torch.from_numpy(index.reshape(-1).astype(np.int64)), classes


# ---- tables -------------------------------------------------------------------------------------

def read_table(path: Path, delimiter: str = ",") -> tuple[np.ndarray, np.ndarray | None]:
    """A CSV/TSV table: numeric columns (N, D), and the `label`/`y` column when there is one.

    The first row is a header when any of its cells is not a number.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise VaelabError(f"{path}: not a UTF-8 text table") from None
    except OSError as e:
        raise VaelabError(f"{path}: cannot read ({e.strerror or e})") from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []  # (line number, cells), blank lines dropped
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((reader.line_num, [cell.strip() for cell in cells]))
    except csv.Error as e:
        raise VaelabError(f"{path} line {reader.line_num}: not a valid table ({e})") from None
    if not rows:
        raise VaelabError(f"{path}: empty table; expected rows of numbers")
    header = None
    if not all(_is_number(cell) for cell in rows[0][1]):
        header = rows.pop(0)[1]
        if not rows:
            raise VaelabError(f"{path}: has a header but no data rows")
    names = header or [str(i + 1) for i in range(len(rows[0][1]))]
    label_col = next((i for i, name in enumerate(names) if name.lower() in LABEL_COLUMNS), None)
    x, labels = [], []
    for line, cells in rows:
        if len(cells) != len(names):
            raise VaelabError(f"{path} line {line}: {len(cells)} columns, expected {len(names)}")
        values = []
        for i, cell in enumerate(cells):
            if i == label_col:
                labels.append(cell)
            elif _is_number(cell):
                values.append(float(cell))
            else:
                raise VaelabError(
                    f"{path} line {line}, column '{names[i]}': '{cell}' is not a number "
                    f"(only a column named {' or '.join(LABEL_COLUMNS)} may hold names)"
                )
        x.append(values)
    if not x[0]:
        raise VaelabError(f"{path}: no numeric columns besides the label")
    if label_col is None:
        return np.array(x), None
    numeric = all(_is_number(cell) for cell in labels)
    return np.array(x), np.array([float(c) for c in labels] if numeric else labels)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# ---- image folders ------------------------------------------------------------------------------

def read_image_folder(
    folder: Path, image_size: list[int] | None = None
) -> tuple[Tensor, Tensor | None, list[str] | None]:
    """Images (N, C, H, W) in [0, 1], labels and class names from a folder of PNG/JPEG files.

    With class sub-folders, labels are their sorted names; without, there are no labels. Grey
    images give C=1, colour C=3 (alpha dropped; grey ones are made RGB when the two are mixed).
    Images of another size are resized to `image_size` ([H, W]) or to the first image's size.
    Files that are not readable images are skipped with a warning.
    """
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    class_dirs = [p for p in entries if p.is_dir()]
    if class_dirs:
        loose = [p.name for p in entries if p.is_file()]
        if loose:
            _warn(f"{folder}: ignored {len(loose)} files outside the class sub-folders", loose)
        files = [(f, d.name) for d in class_dirs for f in _files_under(d)]
    else:
        files = [(f, "") for f in entries if f.is_file()]  # no class: the labels are unused
    if not files:
        raise VaelabError(
            f"{folder}: no files; expected PNG/JPEG images, at the top or one sub-folder per class"
        )

    images: list[np.ndarray] = []  # each (H, W) or (H, W, 3) float32 in [0, 1]
    labels: list[str] = []
    skipped: list[str] = []
    resized: set[tuple[int, int]] = set()
    size = tuple(image_size) if image_size else None  # (H, W)
    img: Image.Image
    for path, label in files:
        try:
            with Image.open(path) as img:
                img.load()
                img = _grey_or_rgb(img)
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
            skipped.append(str(path.relative_to(folder)))
            continue
        size = size or (img.height, img.width)
        if (img.height, img.width) != size:
            resized.add((img.height, img.width))
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        images.append(_to_array(img))
        labels.append(label)

    if skipped:
        _warn(f"{folder}: skipped {len(skipped)} files that are not readable images", skipped)
    if not images:
        raise VaelabError(f"{folder}: no readable images (PNG/JPEG) among {len(files)} files")
    assert size is not None  # the first readable image set it
    if resized and not image_size:
        sizes = ", ".join(f"{h}x{w}" for h, w in sorted(resized))
        warnings.warn(
            f"{folder}: images have mixed sizes ({sizes}); resized them to {size[0]}x{size[1]}, "
            "the first image's size; set data.image_size [H, W] to choose the size",
            VaelabWarning, stacklevel=3,
        )
    if any(a.ndim == 3 for a in images) and any(a.ndim == 2 for a in images):
        warnings.warn(f"{folder}: mixed grey and colour images; grey ones were made RGB", VaelabWarning,
                      stacklevel=3)
        images = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in images]
    x = torch.from_numpy(np.stack(images))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    if not class_dirs:
        return x, None, None
    classes = sorted(set(labels))
    y = torch.tensor([classes.index(label) for label in labels], dtype=torch.int64)
    empty = [d.name for d in class_dirs if d.name not in classes]
    if empty:
        _warn(f"{folder}: ignored {len(empty)} class folders without readable images", empty)
    return x, y, classes


def _files_under(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _grey_or_rgb(img: Image.Image) -> Image.Image:
    """A PIL image as 8-bit grey ("L"), 16-bit grey as float ("F", in [0, 1]) or "RGB"."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey PNG
        return Image.fromarray(np.asarray(img, dtype=np.float32) / 65535.0, mode="F")
    if img.mode in ("1", "L", "LA", "F"):
        return img.convert("L") if img.mode != "F" else img
    if img.mode == "P":
        rgb = img.convert("RGB")
        return rgb.convert("L") if _is_grey(rgb) else rgb
    return img.convert("RGB")


def _is_grey(img: Image.Image) -> bool:
    a = np.asarray(img)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _to_array(img: Image.Image) -> np.ndarray:
    a = np.asarray(img, dtype=np.float32)  # (H, W) or (H, W, 3)
    return a if img.mode == "F" else a / 255.0


def _warn(message: str, names: list[str]) -> None:
    shown = ", ".join(names[:SHOW]) + (", ..." if len(names) > SHOW else "")
    warnings.warn(f"{message}: {shown}", VaelabWarning, stacklevel=4)


# ---- splitting ----------------------------------------------------------------------------------

def split_test(name: str, x: Tensor, y: Tensor | None, classes: list[str] | None, path: Path) -> Data:
    """A `Data` holding out a fixed-seed TEST_FRACTION of the examples as the test split."""
    n = len(x)
    if n < MIN_EXAMPLES:
        raise VaelabError(f"{path}: holds {n} examples; vaelab needs at least {MIN_EXAMPLES} to split")
    n_test = max(1, round(n * TEST_FRACTION))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(TEST_SEED))
    everything = Split(x, y)
    value_range = _value_range(x)
    # Bernoulli suits [0, 1] data; for real values the right scale is unknown, so learn one.
    likelihood = "gaussian-global" if value_range == "real" else "bernoulli"
    return Data(
        name=name, train=everything.subset(perm[n_test:]), test=everything.subset(perm[:n_test]),
        value_range=value_range, classes=classes, defaults={"model": {"likelihood": likelihood}},
        levels=_levels(x, value_range),
    )


def _value_range(x: Tensor) -> str:
    if ((x == 0) | (x == 1)).all():
        return "binary"
    return "unit" if x.min() >= 0 and x.max() <= 1 else "real"


def _levels(x: Tensor, value_range: str) -> int | None:
    """2 for binary data; 256 (or 65536) when every value is k / 255 (k / 65535): 8-bit (16-bit)
    images, whether read from uint8 arrays, image files or floats saved as uint8 / 255; else None.

    Only these grids are tried, so data on a coarser grid (k / 16, say) reports None, not a guess.
    """
    if value_range != "unit":
        return 2 if value_range == "binary" else None
    flat = x.reshape(-1)
    for levels in GRID_LEVELS:
        scaled = flat * (levels - 1)
        # float32 holds k / (L - 1) to a relative 2^-24, and the product rounds once more
        tol = (levels - 1) * 2.0**-21
        head = scaled[:LEVELS_PEEK]  # most off-grid data shows itself in the first values
        if (head - head.round()).abs().max() <= tol and (scaled - scaled.round()).abs().max() <= tol:
            return levels
    return None
