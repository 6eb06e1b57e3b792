"""Readers for the file formats datasets come in: IDX (.gz or raw), .npy, MATLAB .mat, .amat text.

Each reader returns a numpy array and turns every decoding problem (a truncated gzip stream, a
wrong magic number, a corrupt MATLAB file, a pickled array) into one `VaelabError` naming the
file. Nothing here unpickles: .npy/.npz are read with allow_pickle=False.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from vaelab.errors import VaelabError


def content_sha256(array: np.ndarray) -> str:
    """SHA256 of an array's bytes in C order: the same for every file form of the same data."""
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes (what MNIST-style sources publish for their archives)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it is gzip-compressed (by its magic number, not its name)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise VaelabError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise VaelabError(f"{path}: corrupt or truncated gzip file ({e})") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST format), plain or gzipped: (N, H, W) or (N,)."""
    raw = read_bytes(path)
    # Header: two zero bytes, type code 0x08 (unsigned byte), the rank, then one big-endian
    # uint32 per dimension. http://yann.lecun.com/exdb/mnist/ ("the IDX file format").
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or not 1 <= raw[3] <= 4:
        raise VaelabError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise VaelabError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    expected = int(np.prod(dims))
    if len(raw) - start != expected:
        raise VaelabError(
            f"{path}: truncated or padded IDX file: {len(raw) - start} bytes of data, "
            f"the header {tuple(dims)} promises {expected}"
        )
    return np.frombuffer(raw, np.uint8, offset=start).reshape(dims)


def read_npy(path: Path) -> np.ndarray:
    """A .npy array, never unpickling (object arrays are refused)."""
    try:
        with path.open("rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise VaelabError(f"{path}: cannot read ({e.strerror or e})") from None
    if magic != b"\x93NUMPY":
        raise VaelabError(f"{path}: not a .npy file (no NumPy header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise VaelabError(f"{path}: holds Python objects (pickled); save a numeric array") from None
        raise VaelabError(f"{path}: corrupt or truncated .npy file ({e})") from None
    except (OSError, EOFError) as e:
        raise VaelabError(f"{path}: not a readable .npy file ({e})") from None


def read_npz_array(path: Path, key: str) -> np.ndarray:
    """Array `key` of a .npz archive; other members are never read (so a pickled one is harmless)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                raise VaelabError(f"{path}: no array '{key}' in this archive (it holds: {archive.files})")
            return archive[key]
    except VaelabError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise VaelabError(f"{path}: corrupt or truncated .npz file ({e})") from None


def read_mat(path: Path, key: str) -> np.ndarray:
    """Variable `key` of a MATLAB .mat file (v4 to v7; v7.3 HDF5 files are not supported)."""
    import scipy.io

    try:
        variables = scipy.io.loadmat(path)
    except NotImplementedError:
        raise VaelabError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; save with -v7") from None
    except (ValueError, TypeError, OSError, EOFError, zlib.error, IndexError) as e:
        raise VaelabError(f"{path}: corrupt or truncated MATLAB file ({e})") from None
    if key not in variables:
        found = [k for k in variables if not k.startswith("__")]
        raise VaelabError(f"{path}: no variable '{key}' in this MATLAB file (it holds: {found})")
    return variables[key]


def read_amat(path: Path) -> np.ndarray:
    """Larochelle's .amat text: one row of space-separated 0/1 values per line -> (N, D) uint8.

    Some copies named `.amat` are MATLAB files holding the same array as variable `X`; those are
    recognised by their header and read as such.
    """
    try:
        with path.open("rb") as f:
            head = f.read(6)
    except OSError as e:
        raise VaelabError(f"{path}: cannot read ({e.strerror or e})") from None
    if head == b"MATLAB":
        return read_mat(path, "X")
    raw = np.frombuffer(read_bytes(path), np.uint8)
    grid = _amat_grid(raw)
    if grid is not None:
        return grid
    # Irregular spacing: a slower general parse. Every byte must be a digit 0/1, a blank or a
    # newline, and digits must stand alone.
    digit = (raw == ord("0")) | (raw == ord("1"))
    newline = raw == ord("\n")
    blank = (raw == ord(" ")) | (raw == ord("\t")) | (raw == ord("\r"))
    if not (digit | newline | blank).all() or (digit[1:] & digit[:-1]).any():
        raise VaelabError(f"{path}: not a binary .amat file (expected lines of 0/1 separated by spaces)")
    line_of_digit = np.cumsum(newline, dtype=np.int32)[digit]
    counts = np.bincount(line_of_digit)
    counts = counts[counts > 0]
    if len(counts) == 0:
        raise VaelabError(f"{path}: empty .amat file")
    if (counts != counts[0]).any():
        bad = int(np.flatnonzero(counts != counts[0])[0])
        raise VaelabError(
            f"{path}: row {bad + 1} has {counts[bad]} values, row 1 has {counts[0]} (truncated file?)"
        )
    return (raw[digit] - ord("0")).reshape(len(counts), int(counts[0]))


def _amat_grid(raw: np.ndarray) -> np.ndarray | None:
    """The fast path for the usual layout: equal lines of "d d ... d\n" (a trailing space allowed).

    Returns None when the bytes are laid out any other way.
    """
    newlines = np.flatnonzero(raw == ord("\n"))
    if len(newlines) == 0 or newlines[0] < 1 or raw[-1] != ord("\n"):
        return None
    width = int(newlines[0]) + 1  # bytes per line, newline included
    if raw.size % width or not np.array_equal(newlines, np.arange(width - 1, raw.size, width)):
        return None
    grid = raw.reshape(-1, width)  # (N, width)
    digits, separators = grid[:, 0 : width - 1 : 2], grid[:, 1 : width - 1 : 2]
    if not (((digits == ord("0")) | (digits == ord("1"))).all() and (separators == ord(" ")).all()):
        return None
    return digits - ord("0")
