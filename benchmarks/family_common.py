"""Shared pieces of the model-family experiments (family_*.py): options, data, training, IS-LL.

Not part of vaelab and not run by pytest. Run folders go to runs/family/ (git-ignored); the
numbers (JSON) and figures worth keeping go to benchmarks/results/family_<name>/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

import vaelab
from vaelab.config import Config, DataConfig
from vaelab.data import Data, load_data
from vaelab.evaluation import evaluate_run

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = os.environ.get("VAELAB_DATA", str(ROOT.parent / "shared" / "datasets"))


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-dir", default=DEFAULT_DATA, help="folder holding mnist/, frey_faces/")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on a shared, loaded machine)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    return p


def setup(args: argparse.Namespace, name: str) -> tuple[Path, Path]:
    """Threads and seeds; returns (runs folder, results folder) for experiment `name`."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    runs, results = ROOT / "runs" / "family" / name, ROOT / "benchmarks" / "results" / f"family_{name}"
    runs.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    print(f"$ python {' '.join(sys.argv)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), load avg "
          f"{os.getloadavg()[0]:.1f}")
    return runs, results


def data(name: str, data_dir: str, binarize: str = "none", train_size: int = 0) -> Data:
    """A named dataset; train_size > 0 keeps that many training examples (a fixed subset)."""
    d = load_data(DataConfig(name=name, data_dir=data_dir, binarize=binarize))
    if train_size and train_size < len(d.train):
        keep = torch.randperm(len(d.train), generator=torch.Generator().manual_seed(0))[:train_size]
        d.train = d.train.subset(keep)
    return d


def train(config: Config, run: Path, d: Data, device: str) -> vaelab.training.TrainResult:
    """Trains from scratch into `run` (replacing it), without a progress bar."""
    start = time.perf_counter()
    result = vaelab.train(config, run, data=d, device=device, overwrite=True, progress=False)
    print(f"  trained {run.name}: {config.train.epochs} epochs in {time.perf_counter() - start:.0f} s")
    return result


ESTIMATES = ("log_likelihood", "log_likelihood_given_y", "log_density_dequantised", "log_density")


def test_numbers(result: Any, d: Data, k: int, limit: int = 0) -> dict[str, Any]:
    """Test ELBO and the importance-sampled log p(x) (log p(x|y), or a log-density, as the run's
    likelihood gives) with k samples, on the first `limit` test examples (0: all)."""
    numbers = evaluate_run(result.model, result.config, d, "test", k=k, limit=limit or None)
    key = next(name for name in ESTIMATES if name in numbers)
    return {"n": numbers["n"], "elbo": numbers["elbo"], "kl": numbers["kl"], "quantity": key,
            "log_p": numbers[key], "log_p_sem": numbers[f"{key}_sem"],
            "active_units": numbers["active_units"], "k": k}


def keep(results: Path, summary: dict[str, Any], *figures: Path) -> None:
    """Writes summary.json and copies figures into the results folder."""
    for f in figures:
        if f.is_file():
            shutil.copy(f, results / f.name)
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {results}/summary.json" + (f" and {len(figures)} figure(s)" if figures else ""))
