"""Training: one plain loop over in-memory tensors, with checkpoints you can resume exactly.

Randomness comes from two generators saved in every checkpoint: `shuffle` (CPU; the epoch's
permutation) and `noise` (on the device; reparameterisation noise and dynamic binarization).
Resuming restores both, so 1 epoch + resume + 1 epoch equals 2 epochs bit for bit on CPU.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from vaelab import runfolder
from vaelab.config import Config
from vaelab.data import Data, Split, dynamic_binarize, load_data
from vaelab.errors import VaelabError
from vaelab.models import VAE, build_model
from vaelab.objectives import compute_loss, elbo, is_deterministic

MAX_BAD_STEPS = 20  # consecutive non-finite steps before training stops
EVAL_SEED = 999  # validation uses its own generator so it never shifts the training noise


@dataclass
class TrainResult:
    run: Path
    model: VAE
    config: Config
    data: Data
    history: list[dict[str, Any]]  # the per-epoch records of metrics.jsonl
    seconds: float


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


def prepare(config: Config, data: Data | None = None) -> tuple[Config, Data]:
    """Loads the data and completes the config with the data's shape and checks."""
    data = data if data is not None else load_data(config.data)
    model = config.model
    model.x_shape = data.x_shape
    if model.cond_dim and data.train.y is None:
        raise VaelabError(f"data: a conditional model needs labels, and {data.name} has none")
    bernoulli = model.likelihood in ("bernoulli", "continuous-bernoulli")
    if bernoulli and data.value_range == "real":
        lo, hi = float(data.train.x.min()), float(data.train.x.max())
        raise VaelabError(f"data: the {model.likelihood} likelihood needs values in [0, 1], but "
                          f"{data.name} spans [{lo:.3g}, {hi:.3g}]; use --likelihood gaussian")
    return config, data


def condition(y: Tensor | None, cond_dim: int) -> Tensor | None:
    """The condition vector of a conditional VAE: one-hot labels (B, Y), or None."""
    if not cond_dim or y is None:
        return None
    return F.one_hot(y, cond_dim).float() if y.dim() == 1 else y.float()


def train(config: Config, run: str | Path, *, data: Data | None = None, resume: bool = False,
          overwrite: bool = False, device: str = "auto", progress: bool = True,
          figures: bool = True) -> TrainResult:
    """Trains a VAE as `config` says and writes the run folder `run`.

    Args:
        config: the full configuration (data, model, objective, train).
        run: the run folder to create, or to continue with resume=True.
        data: already-loaded data (else config.data is loaded).
        resume: continue from run/checkpoint.pt (config.train.epochs may be raised).
        overwrite: replace a run folder that already holds a different run.
        device: auto | cpu | cuda | mps.
        progress: show a tqdm progress bar.
        figures: write samples/reconstructions/curves/latent PNGs at the end.
    """
    start = time.perf_counter()
    run = Path(run)
    dev = resolve_device(device)
    config, data = prepare(config, data)
    _claim_folder(run, resume, overwrite)

    t = config.train
    torch.manual_seed(t.seed)  # weight initialisation
    model = build_model(config.model).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr)
    shuffle = torch.Generator().manual_seed(t.seed)
    noise = torch.Generator(device=dev).manual_seed(t.seed + 1)
    epoch, batch_in_epoch, step = 0, 0, 0
    epoch_shuffle_state = shuffle.get_state()
    if resume:
        ckpt = runfolder.load_checkpoint(run)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        noise.set_state(ckpt["noise_state"])
        epoch_shuffle_state = ckpt["epoch_shuffle_state"]
        epoch, batch_in_epoch, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
    if resume:
        runfolder.write_json(run / runfolder.CONFIG, config.to_dict())  # e.g. more epochs
    else:
        runfolder.save_model(run, model, config)

    n = len(data.train)
    steps_per_epoch = math.ceil(n / t.batch_size)
    bar = tqdm(total=t.epochs * steps_per_epoch, initial=step, disable=not progress,
               desc=f"train {run.name}", unit="step", dynamic_ncols=True, file=sys.stderr)
    x_all, y_all = data.train.x, data.train.y
    sums = torch.zeros(3, device=dev)  # running sums of elbo, reconstruction, kl since last log
    count, bad_steps, skipped = 0, 0, 0

    def checkpoint(epoch_: int, batch_: int) -> None:
        runfolder.save_checkpoint(run, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "noise_state": noise.get_state(), "epoch_shuffle_state": epoch_shuffle_state,
            "epoch": epoch_, "batch_in_epoch": batch_, "step": step,
        })

    model.train()
    while epoch < t.epochs:
        epoch_start = time.perf_counter()
        shuffle.set_state(epoch_shuffle_state)
        perm = torch.randperm(n, generator=shuffle)
        for b in range(batch_in_epoch, steps_per_epoch):
            idx = perm[b * t.batch_size:(b + 1) * t.batch_size]
            x = x_all[idx].to(dev, non_blocking=True)
            if config.data.binarize == "dynamic":
                x = dynamic_binarize(x, noise)
            y = condition(None if y_all is None else y_all[idx].to(dev), config.model.cond_dim)
            out = model(x, y, num_samples=config.objective.num_samples, generator=noise,
                        deterministic=is_deterministic(config.objective))
            loss = compute_loss(config.objective, out, x)
            optimizer.zero_grad(set_to_none=True)
            loss.loss.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            if not torch.isfinite(loss.loss):
                bad_steps, skipped = bad_steps + 1, skipped + 1
                if bad_steps >= MAX_BAD_STEPS:
                    bar.close()
                    raise VaelabError(
                        f"training stopped: {bad_steps} steps in a row gave a non-finite loss "
                        f"(step {step}). Likely causes: learning rate too high (train.lr={t.lr}), "
                        f"a likelihood scale too small, or data outside the expected range. "
                        f"The last good checkpoint is in {run}")
                continue
            bad_steps = 0
            optimizer.step()
            step += 1
            with torch.no_grad():
                sums += torch.stack([loss.elbo.sum(), loss.reconstruction.sum(), loss.kl.sum()])
            count += len(idx)
            bar.update(1)
            if step % t.log_every == 0:
                progress_ = epoch + (b + 1) / steps_per_epoch
                record = _averages(sums, count) | {"step": step, "epoch": round(progress_, 4)}
                runfolder.append_jsonl(run / runfolder.METRICS, {"split": "train"} | record)
                bar.set_postfix(elbo=f"{record['elbo']:.2f}", kl=f"{record['kl']:.2f}")
                sums.zero_()
                count = 0
            if t.checkpoint_every and step % t.checkpoint_every == 0:
                checkpoint(epoch, b + 1)
        epoch += 1
        batch_in_epoch = 0
        epoch_shuffle_state = shuffle.get_state()
        record: dict[str, Any] = {"split": "epoch", "epoch": epoch, "step": step,
                                  "seconds": round(time.perf_counter() - epoch_start, 3),
                                  "skipped_steps": skipped}
        if data.valid is not None:
            record |= {f"valid_{k}": v for k, v in
                       evaluate_elbo(model, data.valid, config, dev).items()}
        runfolder.append_jsonl(run / runfolder.METRICS, record)
        if "valid_elbo" in record:
            bar.set_postfix(epoch=epoch, valid_elbo=f"{record['valid_elbo']:.2f}")
        runfolder.save_model(run, model, config)
        checkpoint(epoch, 0)
    bar.close()
    model.eval()
    history = [r for r in runfolder.read_metrics(run) if r.get("split") == "epoch"]
    result = TrainResult(run, model, config, data, history, time.perf_counter() - start)
    if figures:
        from vaelab.plots import training_figures

        training_figures(result)
    return result


def _averages(sums: Tensor, count: int) -> dict[str, float]:
    e, r, k = (sums / max(count, 1)).tolist()
    return {"elbo": e, "reconstruction": r, "kl": k}


@torch.no_grad()
def evaluate_elbo(model: VAE, split: Split, config: Config, device: torch.device,
                  batch_size: int = 1000) -> dict[str, float]:
    """The average ELBO and its parts on a split, with a fixed generator (deterministic)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(EVAL_SEED)
    sums = torch.zeros(3, device=device)
    for i in range(0, len(split), batch_size):
        x = split.x[i:i + batch_size].to(device)
        y = None if split.y is None else split.y[i:i + batch_size].to(device)
        out = model(x, condition(y, config.model.cond_dim), generator=gen)
        loss = elbo(out, x)
        sums += torch.stack([loss.elbo.sum(), loss.reconstruction.sum(), loss.kl.sum()])
    model.train(was_training)
    return _averages(sums, len(split))


def _claim_folder(run: Path, resume: bool, overwrite: bool) -> None:
    """Creates the run folder; refuses to write over another run unless told to."""
    if resume:
        if not (run / runfolder.CONFIG).is_file():
            raise VaelabError(f"--resume {run}: not a run folder (no {runfolder.CONFIG})")
        return
    if run.exists() and any(run.iterdir()):
        if not overwrite:
            raise VaelabError(f"{run} already holds a run: pass --resume {run} to continue it, "
                              f"--overwrite to replace it, or choose another --name")
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
