"""Where a named dataset's files come from: local folders, the user cache, or a verified download.

For each file of a dataset (`Part`), the first place that holds it wins, in this order
(DESIGN.md):
  1. the `data_dir` argument, else $VAELAB_DATA: `<dir>/<file>` or `<dir>/<dataset folder>/<file>`;
  2. the user cache: $VAELAB_CACHE, else $XDG_CACHE_HOME/vaelab, else ~/.cache/vaelab, then
     `<dataset folder>/<file>`;
  3. system locations (Debian's /usr/share/datasets/...);
  4. a download into the cache, from each mirror in turn.

Every file is verified by a SHA256 of its decoded content (the uint8 array, in C order), so the
same checksum holds for a .gz, a recompressed .gz, a .mat or an .npy of the same data. A local
file that fails is an error naming it; a downloaded one is deleted and the next mirror tried.
Downloads go to a temporary name in the cache folder and are renamed only once verified, so a
partial or corrupt file is never used or left behind.

Environment: VAELAB_OFFLINE=1 disables downloads; VAELAB_MIRROR="URL [URL ...]" replaces the
official sources with mirrors that serve `<URL>/<dataset folder>/<file>` (file:// works too).
"""

from __future__ import annotations

import functools
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.data.formats import content_sha256, file_md5
from vaelab.errors import VaelabError

TIMEOUT_S = 60  # per socket operation, not for the whole file
CHUNK = 1 << 16
STALE_S = 24 * 3600  # a leftover .part file older than this is from a killed download

Reader = Callable[[Path], np.ndarray]


@dataclass(frozen=True)
class Part:
    """One array of a dataset (e.g. MNIST's training images) and the files it can be read from.

    `readers` maps each accepted file name to its reader; the first name is the one downloaded.
    `sha256` is `content_sha256` of the decoded array, whatever file it came from; `md5` is the
    checksum the source publishes for the downloaded file itself, when there is one.
    """

    readers: dict[str, Reader]
    shape: tuple[int, ...]
    sha256: str
    md5: str | None = None

    @property
    def download_name(self) -> str:
        return next(iter(self.readers))

    def read(self, path: Path, name: str) -> np.ndarray:
        """Reads and verifies `path` (a file called `name`); VaelabError when it does not match."""
        array = self.readers[name](path)
        with np.errstate(invalid="ignore"):  # NaN or out-of-range values simply fail to compare
            if array.dtype != np.uint8 and np.array_equal(array, array.astype(np.uint8)):
                array = array.astype(np.uint8)  # e.g. a MATLAB file that stored the bytes as doubles
        if array.shape != self.shape and array.shape[::-1] == self.shape:
            array = array.T  # MATLAB files store the matrix the other way round (Frey's `ff`)
        if array.shape != self.shape:
            raise VaelabError(f"{path}: holds an array of shape {array.shape}, expected {self.shape}")
        if content_sha256(array) != self.sha256:
            raise VaelabError(f"{path}: checksum mismatch (the content differs from the official data)")
        return np.require(array, requirements=["C", "W"])  # torch wants writable memory


@dataclass(frozen=True)
class Source:
    """A named dataset's files: its arrays by key, its folder name, official URLs, system folders."""

    name: str  # the dataset name users type, e.g. "fashion-mnist"
    folder: str  # its sub-folder in data dirs, the cache and mirrors, e.g. "fashion_mnist"
    parts: dict[str, Part]  # e.g. {"train_x": Part(...), "train_y": Part(...)}
    urls: tuple[str, ...]  # base URLs of the official sources, tried in order
    system_dirs: tuple[str, ...] = ()


def cache_root() -> Path:
    """$VAELAB_CACHE, else $XDG_CACHE_HOME/vaelab, else ~/.cache/vaelab."""
    if os.environ.get("VAELAB_CACHE"):
        return Path(os.environ["VAELAB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "vaelab"


def offline() -> bool:
    return os.environ.get("VAELAB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def file_urls(source: Source, name: str, mirrors: Sequence[str] | None = None) -> list[str]:
    """The URLs to try for file `name`: `mirrors` (or $VAELAB_MIRROR) if given, else the official ones."""
    if mirrors is None and os.environ.get("VAELAB_MIRROR"):
        mirrors = os.environ["VAELAB_MIRROR"].replace(",", " ").split()
    if mirrors:
        return [f"{base.rstrip('/')}/{source.folder}/{name}" for base in mirrors]
    return [base + name for base in source.urls]


def fetch(
    source: Source, data_dir: str | None = None, mirrors: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """All verified arrays of `source`, by part key, each from the first place that has it.

    Args:
        source: the dataset's files and where they are published.
        data_dir: a folder to look in first; None reads $VAELAB_DATA.
        mirrors: base URLs to download from instead of the official ones (default: $VAELAB_MIRROR).
    """
    return {key: fetch_part(source, part, data_dir, mirrors) for key, part in source.parts.items()}


def fetch_part(
    source: Source, part: Part, data_dir: str | None = None, mirrors: Sequence[str] | None = None
) -> np.ndarray:
    """The verified array of one part of `source` (see `fetch`)."""
    for folder in local_dirs(source, data_dir):
        for name in part.readers:
            path = folder / name
            if path.is_file():
                return part.read(path, name)
    return _download_part(source, part, data_dir, mirrors)


def local_dirs(source: Source, data_dir: str | None) -> list[Path]:
    """The folders searched before downloading, in order."""
    dirs: list[Path] = []
    data_dir = data_dir or os.environ.get("VAELAB_DATA") or None
    if data_dir:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise VaelabError(f"data dir {root} is not a folder (from --data-dir or VAELAB_DATA)")
        dirs += [root, root / source.folder, root / source.name]
    dirs.append(cache_root() / source.folder)
    dirs += [Path(d) for d in source.system_dirs]
    return list(dict.fromkeys(dirs))  # drop repeats, keep the order


def _download_part(
    source: Source, part: Part, data_dir: str | None, mirrors: Sequence[str] | None
) -> np.ndarray:
    name = part.download_name
    looked = ", ".join(str(d) for d in local_dirs(source, data_dir))
    where = f"{source.name}: {name} not found (looked in {looked})"
    urls = file_urls(source, name, mirrors)
    if not urls:
        raise VaelabError(
            f"{where}, and vaelab knows no download source for it. Pass --data-dir FOLDER holding "
            f"{_file_list(source)}, or set VAELAB_DATA to such a folder"
        )
    if offline():
        raise VaelabError(
            f"{where}; downloads are off (VAELAB_OFFLINE is set). Pass --data-dir FOLDER holding "
            f"{_file_list(source)}, set VAELAB_DATA to such a folder, or unset VAELAB_OFFLINE"
        )
    folder = cache_root() / source.folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VaelabError(
            f"{where}, and the cache folder {folder} cannot be created ({e.strerror or e}); "
            "set VAELAB_CACHE to a writable folder or pass --data-dir"
        ) from None
    failures = []
    for url in urls:
        try:
            return download(url, folder / name, functools.partial(_check_download, part, name, url))
        except (VaelabError, OSError, http.client.HTTPException) as e:
            failures.append(f"{url}: {_reason(e)}")
    raise VaelabError(
        f"{where}, and the download failed ({'; '.join(failures)}). Pass --data-dir FOLDER holding "
        f"{_file_list(source)}, set VAELAB_DATA to such a folder, or check your connection"
    )


def _check_download(part: Part, name: str, url: str, path: Path) -> np.ndarray:
    if part.md5 is not None and file_md5(path) != part.md5:
        raise VaelabError(f"MD5 mismatch (corrupt or truncated download from {url})")
    try:
        return part.read(path, name)
    except VaelabError as e:  # the message names the temporary file; say what it was instead
        raise VaelabError(str(e).replace(str(path), url)) from None


def download(
    url: str, dest: Path, check: Callable[[Path], np.ndarray], progress: bool | None = None
) -> np.ndarray:
    """Downloads `url` to `dest` atomically: a temporary file, `check` (which returns the decoded
    array or raises), then a rename. On any failure the temporary file is deleted.

    `progress=None` shows a tqdm bar only on a terminal.
    """
    from tqdm import tqdm

    _remove_stale_parts(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            size = response.headers.get("Content-Length")
            total = int(size) if size and size.isdigit() else None
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False,
                       disable=None if progress is None else not progress)
            with bar:
                received = 0
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise VaelabError(f"connection closed after {received} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        array = check(tmp)
        os.replace(tmp, dest)
        return array
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_parts(dest: Path) -> None:
    """Deletes temporary files a killed download left behind (older than a day, so never one
    that another process is writing right now)."""
    for stale in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            if time.time() - stale.stat().st_mtime > STALE_S:
                stale.unlink()
        except OSError:
            pass


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _file_list(source: Source) -> str:
    return ", ".join(dict.fromkeys(part.download_name for part in source.parts.values()))
