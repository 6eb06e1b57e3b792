"""Which device to run on: the one place a device name is resolved (library code never picks one)."""

from __future__ import annotations

import torch

from vaelab.errors import VaelabError


def resolve_device(name: str) -> torch.device:
    """auto -> cuda if available, else mps, else cpu; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VaelabError("--device cuda: no CUDA GPU is visible to PyTorch (try --device auto)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise VaelabError("--device mps: Apple MPS is not available here (try --device auto)")
    if name not in ("cpu", "cuda", "mps"):
        raise VaelabError(f"--device must be auto, cpu, cuda or mps, not '{name}'")
    return torch.device(name)
