"""User data: .npy/.npz arrays and image folders (to be completed)."""

from __future__ import annotations

from pathlib import Path

from vaelab.config import DataConfig
from vaelab.data import Data
from vaelab.errors import VaelabError


def load_path(path: Path, config: DataConfig) -> Data:
    raise VaelabError(f"data: cannot read {path} yet")
