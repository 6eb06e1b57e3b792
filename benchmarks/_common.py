"""Shared pieces of the benchmarks: the machine's name, MNIST as tensors, statistics, JSON out.

Not part of vaelab and not run by pytest. Each benchmark prints a table and writes JSON to
--out (default benchmarks/results/<name>.json).
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MNIST_DIRS = [os.environ.get("VAELAB_DATA", ""), str(ROOT.parent / "shared" / "datasets"),
              "/work/shared/datasets"]


def machine() -> dict[str, Any]:
    """CPU model, core count, torch version and thread count: what absolute numbers depend on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["load_average_1min"] = round(os.getloadavg()[0], 2)  # a sign of contention
    except OSError:
        pass
    return info


def describe(info: dict[str, Any]) -> str:
    load = f", load avg {info['load_average_1min']}" if "load_average_1min" in info else ""
    return (f"machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']} "
            f"({info['torch_threads']} threads), python {info['python']}{load}")


def mnist_dir() -> Path | None:
    for base in MNIST_DIRS:
        if base and (Path(base) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(base) / "mnist"
    return None


def read_idx_images(path: Path) -> torch.Tensor:
    """An IDX3 .gz file as float32 (N, 784) in [0, 1]."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows * cols)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def load_mnist(split: str = "train", fallback_n: int = 60000) -> tuple[torch.Tensor, str]:
    """MNIST images (N, 784) in [0, 1] and the data's name; random binary data when absent."""
    folder = mnist_dir()
    if folder is None:
        gen = torch.Generator().manual_seed(0)
        n = fallback_n if split == "train" else 10000
        return torch.bernoulli(torch.full((n, 784), 0.13), generator=gen), "random-binary-784"
    name = "train-images-idx3-ubyte.gz" if split == "train" else "t10k-images-idx3-ubyte.gz"
    return read_idx_images(folder / name), f"mnist-{split}"


def stats(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max, relative half-range) of repeated measurements."""
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / (2 * med) if med else 0.0,
            "n": len(values), "values": values}


def write_json(result: dict[str, Any], out: str | None, name: str) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def save_plot(fig: Any, out: Path) -> Path:
    """Finishes a learning-curve figure (legend, grid) and writes it beside `out` as a PNG."""
    import matplotlib.pyplot as plt

    fig.axes[0].legend(fontsize=8)
    fig.axes[0].grid(alpha=0.3)
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png)
    plt.close(fig)
    return png


def table(header: list[str], rows: list[list[Any]]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def load_recipe_data(config: Any) -> Any:
    """The data a recipe names, via vaelab.data.load_data; MNIST from the shared datasets folder
    when no data_dir is given and it is there."""
    from vaelab.data import load_data

    if config.data.name == "mnist" and not config.data.data_dir and mnist_dir() is not None:
        config.data.data_dir = str(mnist_dir())
    return load_data(config.data)
