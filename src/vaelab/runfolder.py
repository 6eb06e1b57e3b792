"""The run folder, the contract between `train` and every later command.

    runs/<name>/config.json        the resolved Config
    runs/<name>/model.safetensors  weights only (loading never unpickles code)
    runs/<name>/checkpoint.pt      optimiser state, step, RNG states (torch.load weights_only)
    runs/<name>/metrics.jsonl      one JSON object per line

Every file is written to a temporary name in the same folder, flushed to disk and renamed over
the old one, so a crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vaelab.config import Config
from vaelab.errors import VaelabError
from vaelab.models import VAE, build_model

CONFIG, WEIGHTS, CHECKPOINT, METRICS = (
    "config.json", "model.safetensors", "checkpoint.pt", "metrics.jsonl")


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Calls write(tmp) on a temporary file beside `path`, fsyncs it, then renames it to `path`."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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
    """Appends one line with a single write() so a crash cannot interleave half-lines."""
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
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


def save_model(run: Path, model: VAE, config: Config) -> None:
    write_json(Path(run) / CONFIG, config.to_dict())
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(Path(run) / WEIGHTS, lambda tmp: save_file(state, str(tmp)))


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
    run = Path(run)
    config = read_config(run)
    model = build_model(config.model)
    path = run / WEIGHTS
    if not path.is_file():
        raise VaelabError(f"{run}: {WEIGHTS} is missing (was training interrupted before the "
                          f"first epoch ended? resume with: vaelab train --resume {run})")
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
    atomic_write(Path(run) / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run: Path) -> dict[str, Any]:
    path = Path(run) / CHECKPOINT
    if not path.is_file():
        raise VaelabError(f"{run}: nothing to resume, {CHECKPOINT} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a corrupt file
        raise VaelabError(f"{path}: corrupt checkpoint ({type(e).__name__}); the weights in "
                          f"{WEIGHTS} are from the last completed epoch") from None
