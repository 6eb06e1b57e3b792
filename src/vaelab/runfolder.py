"""The run folder, the contract between `train` and every later command.

    runs/<name>/config.json        the resolved Config
    runs/<name>/model.safetensors  weights only (loading never unpickles code)
    runs/<name>/checkpoint.pt      optimiser state, step, RNG states (torch.load weights_only)
    runs/<name>/metrics.jsonl      one JSON object per line
    runs/<name>/.lock              while training: the PID of the one process writing here

Every file is written to a temporary name in the same folder, flushed to disk and renamed over
the old one, so a crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shlex
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from vaelab.config import Config
from vaelab.device import resolve_device
from vaelab.errors import VaelabError
from vaelab.models import VAE, build_model

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two trainings on one folder are not caught
    fcntl = None  # type: ignore[assignment]

CONFIG, WEIGHTS, CHECKPOINT, METRICS, LOCK, LABELS = (
    "config.json", "model.safetensors", "checkpoint.pt", "metrics.jsonl", ".lock", "labels.json")


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Calls write(tmp) on a temporary file beside `path` (its result is ignored), fsyncs it, then
    renames it to `path`.

    An OSError (disk full, read-only folder, permissions) becomes a VaelabError that names the
    file; `path` itself is untouched until the rename, so the previous version stays intact.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically replaces `path` with `data` (plain writes, so a full disk is an OSError)."""
    atomic_write(path, lambda tmp: _write_file(tmp, data))


def _write_file(tmp: Path, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)


def write_error(path: Path, e: OSError) -> VaelabError:
    """A one-line message for a failed write: what, why, and that the old file is still there."""
    reason = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only",
              errno.EACCES: "permission denied", errno.EDQUOT: "the disk quota is exceeded",
              errno.ENOENT: "the folder does not exist"}.get(e.errno or 0, e.strerror or str(e))
    kept = f"; the previous {path.name} is unchanged" if path.exists() else ""
    return VaelabError(f"cannot write {path}: {reason}{kept}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Appends one line with a single O_APPEND write(), so a crash cannot leave half a line
    between whole ones (a short write, e.g. on a full disk, is cut back off)."""
    line = (json.dumps(record) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        size = os.fstat(fd).st_size
        written = os.write(fd, line)
        if written != len(line):
            os.ftruncate(fd, size)
            raise OSError(errno.ENOSPC, "short write")
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        os.close(fd)


def read_metrics(run: Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl; a torn last line (from a kill mid-write) is skipped."""
    path = Path(run) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run: Path, step: int) -> None:
    """Drops the records logged after `step` (work a resume will redo, so none is doubled) and
    any torn line, so that lines appended from now on start on a line of their own."""
    path = Path(run) / METRICS
    if not path.exists():
        return
    text = path.read_text(errors="replace")
    kept = [r for r in read_metrics(run) if r.get("step", 0) <= step]
    if len(kept) != len(text.splitlines()) or not text.endswith("\n"):
        write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())


def save_model(run: Path, model: VAE, config: Config, *, step: int, epoch: int) -> None:
    """Writes config.json and the weights, which record the step and epoch they were saved at."""
    write_json(Path(run) / CONFIG, config.to_dict())
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"step": str(step), "epoch": str(epoch)}
    write_bytes(Path(run) / WEIGHTS, safetensors_bytes(state, metadata=metadata))


# ---- what the weights are, and the files derived from them ---------------------------------
# Every derived file (evaluation JSON, figures, report) records the model step it was made from:
# JSON under "model_step", PNG in a text chunk, HTML in a <meta> tag. A file whose step is not
# the weights' step is stale: `report` remakes it, and `train --resume` deletes them all.
STEP_KEY = "vaelab-model-step"
DERIVED_PATTERNS = ("evaluation-*.json", "*.png", "*.npy", "report.html")


@dataclass(frozen=True)
class ModelState:
    """Where the weights in model.safetensors stand: the step and epoch they were saved at
    (None for runs written before vaelab recorded them) and the epochs the config plans."""

    step: int | None
    epoch: int | None
    epochs: int

    @property
    def finished(self) -> bool:
        return self.epoch is None or self.epoch >= self.epochs

    def note(self, run: Path) -> str | None:
        """A one-line note for an unfinished run, else None."""
        if self.finished:
            return None
        return (f"note: {run} is unfinished: its weights are from epoch {self.epoch} of "
                f"{self.epochs} (resume with: vaelab train --resume {shlex.quote(str(run))})")


def model_state(run: str | Path) -> ModelState:
    run = Path(run)
    config = read_config(run)
    metadata: dict[str, str] = {}
    try:
        with safe_open(str(run / WEIGHTS), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError):
        pass  # `load` reports a missing or unreadable file
    step, epoch = metadata.get("step"), metadata.get("epoch")
    return ModelState(None if step is None else int(step), None if epoch is None else int(epoch),
                      config.train.epochs or 0)


def derived_step(path: Path) -> int | None:
    """The model step a derived file records (None: it records none, or is unreadable)."""
    try:
        if path.suffix == ".json":
            value = json.loads(path.read_text()).get("model_step")
        elif path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as img:
                value = getattr(img, "text", {}).get(STEP_KEY)
        else:
            match = re.search(rf'<meta name="{STEP_KEY}" content="(\d+)"', path.read_text())
            value = match and match.group(1)
    except (OSError, ValueError, AttributeError):
        return None
    return None if value is None else int(value)


def is_current(path: Path, state: ModelState) -> bool:
    """Whether `path` exists and was made from the weights `state` describes."""
    return path.is_file() and state.step is not None and derived_step(path) == state.step


def remove_derived(run: Path) -> None:
    """Deletes the files made from earlier weights (resuming makes them stale)."""
    for pattern in DERIVED_PATTERNS:
        for path in Path(run).glob(pattern):
            path.unlink(missing_ok=True)


def read_config(run: str | Path) -> Config:
    run = Path(run)
    path = run / CONFIG
    if not run.is_dir():
        raise VaelabError(f"run folder not found: {run}")
    if not path.is_file():
        raise VaelabError(f"{run} is not a vaelab run folder: {CONFIG} is missing")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaelabError(f"{path}: not valid JSON ({e})") from None
    return Config.from_dict(d, str(path))


def load(run: str | Path, device: str | torch.device = "cpu") -> VAE:
    """Rebuilds the trained model of a run folder, in eval mode.

    >>> model = vaelab.load("runs/digits")
    >>> model.encode(x).mean  # (B, D)
    """
    if isinstance(device, str):
        device = resolve_device(device)  # checks the device exists, by name
    run = Path(run)
    config = read_config(run)
    model = build_model(config.model)
    path = run / WEIGHTS
    if not path.is_file():
        raise VaelabError(f"{run}: {WEIGHTS} is missing (was training interrupted before the "
                          f"first epoch ended? resume with: vaelab train --resume {shlex.quote(str(run))})")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise VaelabError(f"{path}: unreadable weights ({e})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise VaelabError(f"{path}: weights do not match {CONFIG} ({first})") from None
    return model.to(device).eval()


def save_checkpoint(run: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()  # serialise first: a full disk then fails as a plain OSError
    torch.save(state, buffer)
    write_bytes(Path(run) / CHECKPOINT, buffer.getvalue())


def load_checkpoint(run: Path) -> dict[str, Any]:
    path = Path(run) / CHECKPOINT
    if not path.is_file():
        raise VaelabError(f"{run}: nothing to resume, {CHECKPOINT} is missing")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickles before refusing them
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt file
        raise VaelabError(f"{path}: corrupt checkpoint ({type(e).__name__}); the weights in "
                          f"{WEIGHTS} are from the last completed epoch") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise VaelabError(f"{path}: not a vaelab checkpoint (missing {', '.join(missing)})")
    return ckpt


CHECKPOINT_KEYS = ("model", "optimizer", "noise_state", "epoch_shuffle_state", "epoch",
                   "batch_in_epoch", "step")


class RunLock:
    """An exclusive lock on a run folder (`RUN/.lock`, holding the PID), so two trainings never
    write one folder. It is an flock: the kernel drops it when the process dies, even by
    SIGKILL, so a lock file left by a dead process is simply taken over."""

    def __init__(self, run: Path) -> None:
        self.path = Path(run) / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        while fcntl is not None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise write_error(self.path, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise VaelabError(f"{self.path.parent} is being written by another training "
                                  f"(process {self._holder()}); wait for it or stop it") from None
            if self._same_file(fd):  # else the holder deleted it as we opened it: try again
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                break
            os.close(fd)
        self._remove_leftovers()
        return self

    def _remove_leftovers(self) -> None:
        """Deletes the temporary files (see atomic_write) of a process killed mid-write."""
        for tmp in self.path.parent.glob(".*.*.tmp"):
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked, so no one else holds it
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False
