"""Training: one plain loop over in-memory tensors, with checkpoints you can resume exactly.

Randomness comes from two generators saved in every checkpoint: `shuffle` (CPU; the epoch's
permutation) and `noise` (on the device; reparameterisation noise and dynamic binarization).
Resuming restores both, so 1 epoch + resume + 1 epoch equals 2 epochs bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from vaelab import distributed, runfolder
from vaelab.config import Config, TrainConfig, apply_defaults
from vaelab.data import Data, Split, dynamic_binarize, load_data
from vaelab.errors import TrainingInterrupted, VaelabError
from vaelab.models import VAE, build_model
from vaelab.objectives import OBJECTIVES, active_units, compute_loss, elbo, kl_per_dim

EVAL_SEED = 999  # validation uses its own generator so it never shifts the training noise
COLLAPSED_KL = 0.1  # nats: a latent dimension below this carries almost no information


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
    """Loads the data and returns a completed copy of the config: the dataset's defaults
    applied (vaelab.config.apply_defaults) and the data's shape filled in."""
    data = data if data is not None else load_data(config.data)
    config = apply_defaults(config, data.defaults)
    config.model.x_shape = data.x_shape
    model = config.model
    if model.cond_dim and data.train.y is None:
        raise VaelabError(f"data: a conditional model needs labels, and {data.name} has none")
    if model.cond_dim and data.train.y.dim() == 1 and int(data.train.y.max()) >= model.cond_dim:
        raise VaelabError(f"model.cond_dim {model.cond_dim} is smaller than the number of classes "
                          f"of {data.name} ({int(data.train.y.max()) + 1}); use --conditional")
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


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Denormal floats (below 1.2e-38) flushed to zero on the CPU inside the block.

    x86 arithmetic on them is 10-30x slower, and a long run makes them: decoder logits below
    -87 (exp underflows), and the decaying Adam moments of weights whose gradients stop. By
    epoch 180 of configs/mnist-long.toml epochs took 3x as long without this
    (benchmarks/denormals.py). The flag is per thread and new threads copy it from the one
    creating them, so `vaelab` sets it before any work; a script calling `train` gets it on
    its own thread, on torch's worker threads only if they start inside.
    """
    was_on = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was_on:
            torch.set_flush_denormal(False)


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero."""
    return (torch.tensor([torch.finfo(torch.float32).tiny]) / 8).item() == 0.0


@flush_denormals()
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
    ctx = distributed.setup(resolve_device(device))  # under torchrun: join the process group
    try:
        run = Path(ctx.broadcast(str(run)))  # every rank uses rank 0's run folder
        config, data = prepare(config, data)
        lock = ctx.main_only(lambda: _claim_folder(run, resume, overwrite))  # rank 0 writes
        with lock or contextlib.nullcontext(), StopSignals() as stop:
            return _fit(config, data, run, ctx, resume=resume, progress=progress,
                        figures=figures, stop=stop, start=start)
    finally:
        distributed.cleanup(ctx)


def _fit(config: Config, data: Data, run: Path, ctx: distributed.Context, *, resume: bool,
         progress: bool, figures: bool, stop: StopSignals, start: float) -> TrainResult:
    """The body of `train`, run while holding the run folder's lock (on rank 0)."""
    dev = ctx.device
    if resume and not (run / runfolder.CHECKPOINT).is_file():
        print(f"{run}: no checkpoint yet, starting from step 0", file=sys.stderr)
        resume = False
    t = config.train
    if t.precision == "bf16" and not (dev.type == "cpu" or (dev.type == "cuda"
                                                           and torch.cuda.is_bf16_supported())):
        raise VaelabError(f"train.precision bf16: not supported on {dev} here (use fp32)")
    torch.manual_seed(t.seed)  # weight initialisation
    model = build_model(config.model).to(dev)
    # fused: one kernel updates every parameter; ~1.2x the steps/s of the default Adam on a
    # CPU for small MLPs (benchmarks/train_throughput.py), the same update up to rounding
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, fused=True)
    shuffle = torch.Generator().manual_seed(t.seed)
    noise = torch.Generator(device=dev).manual_seed(t.seed + 1)  # the same on every rank
    epoch, batch_in_epoch, step = 0, 0, 0
    epoch_shuffle_state = shuffle.get_state()
    skipped = 0  # non-finite steps skipped over the whole run
    if resume:
        ckpt = runfolder.load_checkpoint(run)
        _restore(run, ckpt, model, optimizer, noise)
        epoch_shuffle_state = ckpt["epoch_shuffle_state"]
        epoch, batch_in_epoch, step = ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["step"]
        skipped = ckpt.get("skipped_steps", 0)
        if epoch > t.epochs:
            raise VaelabError(f"--epochs {t.epochs}: {run} has already trained {epoch} epochs")
    if ctx.is_main and resume:
        runfolder.truncate_metrics(run, step)  # lines after the checkpoint are redone
        runfolder.write_json(run / runfolder.CONFIG, config.to_dict())  # e.g. more epochs
    elif ctx.is_main:
        runfolder.save_model(run, model, config)

    n = len(data.train)
    steps_per_epoch = math.ceil(n / t.batch_size)
    ctx.check(n, t.batch_size)
    objective = OBJECTIVES[config.objective.name]
    if ctx.enabled and not objective.trains_decoder:  # DDP needs a gradient for every weight
        raise VaelabError(f"objective {config.objective.name} leaves the decoder without "
                          "gradients, which distributed training cannot average; train it in one "
                          "process")
    net = ctx.wrap(model)  # DistributedDataParallel under torchrun: averages the gradients
    bar = tqdm(total=t.epochs * steps_per_epoch, initial=step, disable=not (progress and ctx.is_main),
               desc=f"train {run.name}", unit="step", dynamic_ncols=True, file=sys.stderr)
    x_all, y_all = data.train.x, data.train.y
    num_samples, deterministic = config.objective.num_samples, objective.deterministic
    bf16 = t.precision == "bf16"
    sums = torch.zeros(len(objective.logged), device=dev)  # sums of the logged terms since the last log
    count, bad_steps = 0, 0
    last_save = time.monotonic()

    def checkpoint(epoch_: int, batch_: int) -> None:
        nonlocal last_save
        _check_weights(model, run, step)  # never replace a good checkpoint with NaN weights
        if ctx.is_main:  # ranks hold the same weights; rank 0 writes them
            runfolder.save_checkpoint(run, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "noise_state": noise.get_state(), "epoch_shuffle_state": epoch_shuffle_state,
                "epoch": epoch_, "batch_in_epoch": batch_, "step": step, "skipped_steps": skipped,
            })
        last_save = time.monotonic()

    def checkpoint_due() -> bool:
        by_steps = t.checkpoint_every and step % t.checkpoint_every == 0
        return bool(by_steps) or 0 < t.checkpoint_minutes * 60 <= time.monotonic() - last_save

    if not resume:
        checkpoint(0, 0)  # so a kill at any moment from here on leaves something to resume
    model.train()
    while epoch < t.epochs:
        epoch_start = time.perf_counter()
        shuffle.set_state(epoch_shuffle_state)
        perm = torch.randperm(n, generator=shuffle)
        for b in range(batch_in_epoch, steps_per_epoch):
            # every rank draws the noise of the whole batch and keeps its own rows, so N
            # processes take the steps one process would (up to floating-point rounding)
            idx = perm[b * t.batch_size:(b + 1) * t.batch_size]
            x = x_all[idx].to(dev, non_blocking=True)
            if config.data.binarize == "dynamic":
                x = dynamic_binarize(x, noise)
            eps = None if deterministic else ctx.shard(torch.randn(
                num_samples, len(idx), config.model.latent_dim, generator=noise, device=dev), dim=1)
            mean = ctx.batch_mean(len(idx))  # the objective's batch means: the global batch's
            idx, x = ctx.shard(idx), ctx.shard(x)  # this rank's part of the batch
            y = condition(None if y_all is None else y_all[idx].to(dev), config.model.cond_dim)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                out = net(x, y, num_samples=num_samples, deterministic=deterministic, eps=eps)
            # the KL warm-up and capacity schedules follow the progress in epochs
            loss = compute_loss(config.objective, out, x, epoch=epoch + b / steps_per_epoch,
                                mean=mean)
            optimizer.zero_grad(set_to_none=True)
            loss.loss.backward()
            grad_norm = _grad_norm(model, t.grad_clip)  # and clips it when grad_clip > 0
            if not ctx.all_finite(loss.loss.detach() + grad_norm):  # NaN/inf loss or gradients
                bad_steps, skipped = bad_steps + 1, skipped + 1
                if bad_steps >= t.max_bad_steps:
                    bar.close()
                    raise VaelabError(_divergence_message(bad_steps, step, config, run))
                continue
            bad_steps = 0
            if t.lr_schedule != "constant":
                optimizer.param_groups[0]["lr"] = learning_rate(t, step, steps_per_epoch)
            optimizer.step()
            step += 1
            with torch.no_grad():
                sums += torch.stack([v.sum() for v in objective.terms(loss).values()])
            count += len(idx)
            bar.update(1)
            if step % t.log_every == 0:
                ctx.sum(sums)  # totals over all ranks (nothing to do in one process)
                count = ctx.sum_int(count)
                progress_ = epoch + (b + 1) / steps_per_epoch
                averages = dict(zip(objective.logged, (sums / max(count, 1)).tolist(), strict=True))
                record = averages | {"step": step, "epoch": round(progress_, 4)}
                record |= loss.metrics | {"lr": optimizer.param_groups[0]["lr"]}  # schedules
                if ctx.is_main:
                    runfolder.append_jsonl(run / runfolder.METRICS, {"split": "train"} | record)
                bar.set_postfix({k: f"{v:.2f}" for k, v in averages.items()})
                sums.zero_()
                count = 0
            stopping = ctx.any_rank(bool(stop.signum))  # Ctrl-C/SIGTERM here or on another rank
            if checkpoint_due() or stopping:
                checkpoint(epoch, b + 1)
            if stopping:
                bar.close()
                raise stop.interrupted(run, step)
        epoch += 1
        batch_in_epoch = 0
        epoch_shuffle_state = shuffle.get_state()
        record: dict[str, Any] = {"split": "epoch", "epoch": epoch, "step": step,
                                  "seconds": round(time.perf_counter() - epoch_start, 3),
                                  "skipped_steps": skipped}
        if data.valid is not None and ctx.is_main:
            record |= {f"valid_{k}": v for k, v in
                       evaluate_elbo(model, data.valid, config, dev).items()}
        if ctx.is_main:
            runfolder.append_jsonl(run / runfolder.METRICS, record)
        if "valid_elbo" in record:
            bar.set_postfix(epoch=epoch, valid_elbo=f"{record['valid_elbo']:.2f}")
        _check_weights(model, run, step)
        if ctx.is_main:
            runfolder.save_model(run, model, config)
        checkpoint(epoch, 0)
        if ctx.any_rank(bool(stop.signum)):
            bar.close()
            raise stop.interrupted(run, step)
    stop.restore()  # Ctrl-C while drawing the figures just stops
    bar.close()
    model.eval()
    ctx.barrier()  # rank 0 has written every record
    history = [r for r in runfolder.read_metrics(run) if r.get("split") == "epoch"]
    if ctx.is_main and history and (warning := collapse_warning(history[-1], config)):
        print(warning, file=sys.stderr)
    result = TrainResult(run, model, config, data, history, time.perf_counter() - start)
    if figures and ctx.is_main:
        from vaelab.plots import training_figures

        training_figures(result)
    return result


def learning_rate(t: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step `step` (counted from 0) under t.lr_schedule."""
    if t.lr_schedule == "constant":
        return t.lr
    total = round((t.lr_decay_epochs or t.epochs) * steps_per_epoch)
    progress = min(step / max(total - 1, 1), 1.0)  # 0 at the first step, 1 at the last
    return t.lr_final + (t.lr - t.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))


def _averages(sums: Tensor, count: int) -> dict[str, float]:
    e, r, k = (sums / max(count, 1)).tolist()
    return {"elbo": e, "reconstruction": r, "kl": k}


@torch.no_grad()
def evaluate_elbo(model: VAE, split: Split, config: Config, device: torch.device,
                  batch_size: int = 1000) -> dict[str, Any]:
    """The average ELBO and its parts on a split, with a fixed generator (deterministic),
    and the collapse diagnostics: KL per latent dimension and the number of active units."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(EVAL_SEED)
    sums = torch.zeros(3, device=device)
    kl_dims = torch.zeros(model.latent_dim, device=device)
    locs = []
    for i in range(0, len(split), batch_size):
        x = split.x[i:i + batch_size].to(device)
        y = None if split.y is None else split.y[i:i + batch_size].to(device)
        out = model(x, condition(y, config.model.cond_dim), generator=gen)
        loss = elbo(out, x)
        sums += torch.stack([loss.elbo.sum(), loss.reconstruction.sum(), loss.kl.sum()])
        kl_dims += kl_per_dim(out.qz, out.pz).float().sum(0)
        locs.append(out.qz.mean.float())
    model.train(was_training)
    return _averages(sums, len(split)) | {
        "kl_per_dim": [round(v, 5) for v in (kl_dims / len(split)).tolist()],
        "active_units": int(active_units(torch.cat(locs)).sum()),
    }


def collapse_warning(record: dict[str, Any], config: Config) -> str | None:
    """A warning when most latent dimensions have collapsed on validation data, else None.

    Collapsed: most dimensions are inactive (their posterior mean hardly moves with x) and most
    carry under COLLAPSED_KL nats of KL (q(z_j|x) is close to p(z_j)).
    """
    if "valid_active_units" not in record or not OBJECTIVES[config.objective.name].shapes_kl:
        return None
    active, dims = record["valid_active_units"], config.model.latent_dim
    collapsed = sum(kl < COLLAPSED_KL for kl in record["valid_kl_per_dim"])
    if active * 2 >= dims or collapsed * 2 <= dims:
        return None
    return (f"warning: posterior collapse: only {active} of {dims} latent dimensions are active "
            f"on validation data, and {collapsed} carry < {COLLAPSED_KL} nats of KL. Help: a KL warm-up "
            f"(--warmup linear or --warmup cyclical), free bits (--free-bits 0.1), or a smaller "
            f"--beta (now {config.objective.beta:g})")


def _claim_folder(run: Path, resume: bool, overwrite: bool) -> runfolder.RunLock:
    """Creates and locks the run folder; refuses to write over another run unless told to."""
    if run.exists() and not run.is_dir():
        raise VaelabError(f"{run} is a file, not a run folder")
    if resume:
        if not (run / runfolder.CONFIG).is_file():
            raise VaelabError(f"--resume {run}: not a run folder (no {runfolder.CONFIG})")
        return runfolder.RunLock(run).acquire()
    taken = run.exists() and any(p.name != runfolder.LOCK for p in run.iterdir())
    if taken and not overwrite:
        raise VaelabError(f"{run} already holds a run: pass --resume {run} to continue it, "
                          f"--overwrite to replace it, or choose another --name")
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise runfolder.write_error(run, e) from None
    lock = runfolder.RunLock(run).acquire()  # before deleting: another training may own it
    for path in run.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name != runfolder.LOCK:
            path.unlink()
    return lock


def _restore(run: Path, ckpt: dict[str, Any], model: VAE, optimizer: torch.optim.Optimizer,
             noise: torch.Generator) -> None:
    """Loads a checkpoint's states, or says why it does not fit this run's config."""
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        noise.set_state(ckpt["noise_state"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise VaelabError(f"{run / runfolder.CHECKPOINT} does not match {runfolder.CONFIG} "
                          f"({first[:200]})") from None


def _grad_norm(model: VAE, clip: float) -> Tensor:
    """The total gradient norm (before clipping); clips it to `clip` when clip > 0."""
    params = [p for p in model.parameters() if p.grad is not None]
    if clip:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    return torch.nn.utils.get_total_norm([p.grad for p in params])


def _check_weights(model: VAE, run: Path, step: int) -> None:
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise VaelabError(f"training stopped at step {step}: the weights became non-finite; the "
                          f"last good checkpoint in {run} was kept (try a lower --lr or "
                          f"--grad-clip 1)")


def _divergence_message(bad_steps: int, step: int, config: Config, run: Path) -> str:
    """Why training gave up after `bad_steps` non-finite steps in a row, and what to try."""
    t, m = config.train, config.model
    scale = f", or --obs-scale {m.obs_scale:g} too small" if m.likelihood == "gaussian" else ""
    return (f"training stopped: {bad_steps} steps in a row gave a non-finite loss or gradient "
            f"(at step {step}). Likely causes: the learning rate is too high (train.lr={t.lr:g}; "
            f"try a lower --lr or --grad-clip 1){scale}, or data outside the range the "
            f"{m.likelihood} likelihood expects. The last good checkpoint is kept in {run}")


class StopSignals:
    """Turns SIGINT/SIGTERM during training into a flag that the loop checks after each step,
    so it stops at a clean point with a fresh checkpoint. A second signal stops at once
    (every file is still whole: writes are atomic)."""

    def __init__(self) -> None:
        self.signum = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signal() works only there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self.previous = {}

    def interrupted(self, run: Path, step: int) -> TrainingInterrupted:
        # under torchrun a rank may stop because another rank got the signal
        name = signal.Signals(self.signum).name if self.signum else "a signal to another rank"
        return TrainingInterrupted(
            f"interrupted by {name} at step {step}; checkpoint saved. "
            f"Resume with: vaelab train --resume {run}",
            exit_code=128 + (self.signum or signal.SIGINT))
