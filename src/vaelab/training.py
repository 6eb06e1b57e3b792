"""Training: one plain loop over in-memory tensors, with checkpoints you can resume exactly.

Randomness comes from two generators saved in every checkpoint: `shuffle` (CPU; the epoch's
permutation) and `noise` (on the device; reparameterisation noise and dynamic binarization).
Resuming restores both, so 1 epoch + resume + 1 epoch equals 2 epochs bit for bit on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shlex
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaelab import distributed, runfolder
from vaelab.config import Config, DataConfig, TrainConfig, apply_defaults, need
from vaelab.data import Data, Split, dynamic_binarize, features, load_data, sample_codes
from vaelab.data.splits import keep_labels
from vaelab.device import resolve_device
from vaelab.errors import TrainingInterrupted, VaelabError, VaelabWarning
from vaelab.models import LIKELIHOODS, VAE, build_model
from vaelab.objectives import OBJECTIVES, check_settings, compute_loss

COLLAPSED_KL = 0.1  # nats: a latent dimension below this carries almost no information


@dataclass
class TrainResult:
    run: Path
    model: VAE
    config: Config
    data: Data
    history: list[dict[str, Any]]  # the per-epoch records of metrics.jsonl
    seconds: float


def prepare(config: Config, data: Data | None = None) -> tuple[Config, Data]:
    """Loads the data and returns a completed copy of the config: the dataset's defaults
    applied (vaelab.config.apply_defaults) and the data's shape filled in."""
    data = data if data is not None else load_training_data(config.data)
    config = apply_defaults(config, data.defaults)
    config.model.x_shape = data.x_shape
    model, y = config.model, data.train.y
    if model.cond_dim and y is None:
        raise VaelabError(f"data: a conditional model needs labels, and {data.name} has none")
    if model.cond_dim and y is not None and y.dim() == 1 and int(y.max()) >= model.cond_dim:
        raise VaelabError(f"model.cond_dim {model.cond_dim} is smaller than the number of classes "
                          f"of {data.name} ({int(y.max()) + 1}); use --conditional")
    check_settings(config.objective)
    config, data = _keep_labels(config, data)
    support = LIKELIHOODS[need(model.likelihood, "model.likelihood")].support  # binary | unit | real
    if support != "real" and data.value_range == "real":
        lo, hi = float(data.train.x.min()), float(data.train.x.max())
        raise VaelabError(f"data: the {model.likelihood} likelihood needs values in [0, 1], but "
                          f"{data.name} spans [{lo:.3g}, {hi:.3g}]; use --likelihood gaussian")
    return config, data


def load_training_data(d: DataConfig) -> Data:
    """load_data; for M1+M2 (data.features) after encoding that run first (`encode_run`)."""
    if d.features:
        encode_run(d.features)
    return load_data(d)


def encode_run(run: str | Path) -> Path:
    """Writes RUN/codes.safetensors (vaelab.data.features): the mean and standard deviation of
    q(z|x) of the VAE trained in RUN, for every split of its own data, unless the file already
    holds the codes of its current weights. Returns the file's path. This is M1 of Kingma et
    al. (2014), section 3.1.3; M2 then trains on the codes (data.features = RUN)."""
    run = Path(run)
    if not (run / runfolder.CONFIG).is_file():
        raise VaelabError(f"data.features {run}: not a run folder (no {runfolder.CONFIG}); "
                          f"train a VAE there first, e.g. vaelab train --data mnist --name m1")
    path, config = run / features.CODES, runfolder.read_config(run)
    if features.codes_step(run) == features.weights_step(run):
        return path
    if config.model.family != "vae" or config.model.cond_dim:
        raise VaelabError(f"data.features {run}: that run's encoder takes the class too "
                          f"(family {config.model.family}, cond_dim {config.model.cond_dim}); "
                          f"M1 is a plain VAE, trained without --family m2 / --conditional")
    model = runfolder.load(run)

    @torch.no_grad()
    def encode(x: Tensor) -> tuple[Tensor, Tensor]:
        qz = model.encode(x)
        return qz.mean, qz.stddev

    step = runfolder.model_state(run).step
    runfolder.write_bytes(path, features.codes_bytes(load_data(config.data), encode, step=step,
                                                     dataset=config.data.name))
    return path


def _keep_labels(config: Config, data: Data) -> tuple[Config, Data]:
    """For a semi-supervised objective (M2): K classes from the data, the training labels cut
    to data.labels (balanced, drawn with the seed; -1 marks the rest), validation labels
    hidden (validation scores log p(x) with y summed out), and alpha's default N / N_l."""
    o, d = config.objective, config.data
    if (config.model.family == "m2") != OBJECTIVES[o.name].semi_supervised:
        raise VaelabError("model.family m2 is trained with objective.name m2, and only it "
                          "(vaelab train --family m2)")
    if not OBJECTIVES[o.name].semi_supervised:
        if d.labels:
            raise VaelabError(f"data.labels {d.labels}: only semi-supervised training keeps a "
                              f"few labels; train with --family m2")
        return config, data
    y = data.train.y
    if y is None or y.dim() != 1:
        raise VaelabError(f"data: {data.name} has no class labels, and M2 needs some")
    k = len(data.classes) if data.classes else int(y.max()) + 1
    config.model.cond_dim = k
    train = keep_labels(data.train, d.labels, k, config.train.seed)[0] if d.labels else data.train
    n_labelled = int((need(train.y, "train labels") >= 0).sum())
    if o.alpha is None:
        o.alpha = len(train) / n_labelled  # see vaelab.objectives.m2
    valid = None if data.valid is None else Split(data.valid.x)
    return config, dataclasses.replace(data, train=train, valid=valid)


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


Validate = Callable[[VAE, Split], dict[str, Any]]  # the validation metrics of a model


@flush_denormals()
def fit(config: Config, run: str | Path, *, data: Data | None = None, resume: bool = False,
        overwrite: bool = False, device: str = "auto", progress: bool = True,
        validate: Validate | None = None) -> TrainResult:
    """Trains a VAE as `config` says and writes the run folder `run` (no figures: see
    vaelab.workflows.train, which is `vaelab.train`).

    Args:
        config: the configuration; unset settings take the dataset's defaults (not changed).
        run: the run folder to create, or to continue with resume=True.
        data: already-loaded data (else config.data is loaded).
        resume: continue from run/checkpoint.pt (config.train.epochs may be raised).
        overwrite: replace a run folder that already holds a different run.
        device: auto | cpu | cuda | mps.
        progress: show a tqdm progress bar.
        validate: computes the validation metrics (ELBO, KL per dimension, ...) of the model
            on data.valid, before training and after every epoch; None: no validation.
    """
    start = time.perf_counter()
    ctx = distributed.setup(resolve_device(device))  # under torchrun: join the process group
    try:
        run = Path(ctx.broadcast(str(run)))  # every rank uses rank 0's run folder
        config, data = prepare(config, data)
        lock = ctx.main_only(lambda: _claim_folder(run, resume, overwrite))  # rank 0 writes
        with lock or contextlib.nullcontext(), StopSignals() as stop:
            trainer = Trainer(config, data, run, ctx, stop, validate, resume, progress)
            trainer.run()
            history = [r for r in runfolder.read_metrics(run) if r.get("split") == "epoch"]
            return TrainResult(run, trainer.model, config, data, history,
                               time.perf_counter() - start)
    finally:
        distributed.cleanup(ctx)


class Trainer:
    """The state of one training run and the loop over its epochs and batches.

    Randomness: `shuffle` (CPU) permutes each epoch, `noise` (on the device) draws the
    reparameterisation noise and dynamic binarization; both are in every checkpoint.
    """

    def __init__(self, config: Config, data: Data, run: Path, ctx: distributed.Context,
                 stop: StopSignals, validate: Validate | None, resume: bool,
                 progress: bool) -> None:
        self.config, self.data, self.run_dir, self.ctx, self.stop = config, data, run, ctx, stop
        # every rank knows whether there is validation; rank 0 alone computes it
        self.validating = validate is not None and data.valid is not None
        self.validate = validate if ctx.is_main else None
        t, dev = config.train, ctx.device
        self.epochs = need(t.epochs, "train.epochs")
        self.batch_size = need(t.batch_size, "train.batch_size")
        if t.precision == "bf16" and not (dev.type == "cpu" or (
                dev.type == "cuda" and torch.cuda.is_bf16_supported())):
            raise VaelabError(f"train.precision bf16: not supported on {dev} here (use fp32)")
        if resume and not (run / runfolder.CHECKPOINT).is_file():
            print(f"{run}: no checkpoint yet, starting from step 0", file=sys.stderr)
            resume = False
        torch.manual_seed(t.seed)  # weight initialisation
        self.model = build_model(config.model).to(dev)
        # fused: one kernel updates every parameter; ~1.2x the steps/s of the default Adam on
        # a CPU for small MLPs (benchmarks/train_throughput.py), the same update up to rounding
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr, fused=True)
        self.shuffle = torch.Generator().manual_seed(t.seed)
        self.noise = torch.Generator(device=dev).manual_seed(t.seed + 1)  # same on every rank
        self.epoch, self.batch_in_epoch, self.step, self.skipped = 0, 0, 0, 0
        self.bad_steps = 0  # non-finite steps in a row
        # semi-supervised (M2): the labelled examples, a batch of which joins every step
        self.labelled: Tensor | None = None
        if OBJECTIVES[config.objective.name].semi_supervised and data.train.y is not None:
            self.labelled = (data.train.y >= 0).nonzero().flatten()
            self.labelled_batch = min(len(self.labelled), self.batch_size)
        self.epoch_shuffle_state = self.shuffle.get_state()
        self.steps_per_epoch = math.ceil(len(data.train) / self.batch_size)
        ctx.check(len(data.train), self.batch_size)
        self.objective = OBJECTIVES[config.objective.name]
        if ctx.enabled and not self.objective.trains_decoder:  # DDP needs every gradient
            raise VaelabError(f"objective {config.objective.name} leaves the decoder without "
                              "gradients, which distributed training cannot average; train it "
                              "in one process")
        self.resumed = resume
        if resume:
            self._resume()
        self.net = ctx.wrap(self.model)  # DistributedDataParallel under torchrun
        self.bar = tqdm(total=self.epochs * self.steps_per_epoch, initial=self.step,
                        disable=not (progress and ctx.is_main), desc=f"train {run.name}",
                        unit="step", dynamic_ncols=True, file=sys.stderr)
        self.last_save = time.monotonic()
        # sums of the logged terms (the objective's bound, reconstruction, kl) since the last log
        self.sums = torch.zeros(len(self.objective.logged), device=dev)
        self.count = 0

    def _resume(self) -> None:
        ckpt = runfolder.load_checkpoint(self.run_dir)
        _restore(self.run_dir, ckpt, self.model, self.optimizer, self.noise)
        self.epoch_shuffle_state = ckpt["epoch_shuffle_state"]
        self.epoch, self.batch_in_epoch = ckpt["epoch"], ckpt["batch_in_epoch"]
        self.step, self.skipped = ckpt["step"], ckpt.get("skipped_steps", 0)
        if self.epoch > self.epochs:
            raise VaelabError(f"--epochs {self.epochs}: {self.run_dir} has already "
                              f"trained {self.epoch} epochs")

    def run(self) -> None:
        """Trains to config.train.epochs, checkpointing as it goes; raises TrainingInterrupted
        on SIGINT/SIGTERM and VaelabError when training fails (NaN, divergence)."""
        run, ctx = self.run_dir, self.ctx
        if ctx.is_main and self.resumed:
            runfolder.truncate_metrics(run, self.step)  # lines after the checkpoint are redone
            runfolder.remove_derived(run)  # figures and evaluations of the older weights
            runfolder.write_json(run / runfolder.CONFIG, self.config.to_dict())  # more epochs
        elif ctx.is_main:
            self._save_model()
        if not self.resumed:
            self._checkpoint(0, 0)  # so a kill at any moment from here on can be resumed
            if self.labelled is not None and ctx.is_main:  # which labels training saw
                runfolder.write_json(run / runfolder.LABELS, {
                    "labels": len(self.labelled), "seed": self.config.train.seed,
                    "train_indices": self.labelled.tolist()})
            if self.validating:  # the untrained model: where the curves start, and
                self._log_epoch(0.0)  # the baseline that tells divergence from learning
        self.model.train()
        while self.epoch < self.epochs:
            self._train_epoch()
        self.stop.restore()  # Ctrl-C from here on just stops
        self.bar.close()
        self.model.eval()
        ctx.barrier()  # rank 0 has written every record
        history = [r for r in runfolder.read_metrics(run) if r.get("split") == "epoch"]
        if ctx.is_main and history and (warning := collapse_warning(history[-1], self.config)):
            warnings.warn(warning, VaelabWarning, stacklevel=2)

    def _train_epoch(self) -> None:
        epoch_start = time.perf_counter()
        self.shuffle.set_state(self.epoch_shuffle_state)
        perm = torch.randperm(len(self.data.train), generator=self.shuffle)
        batch_size = self.batch_size
        for b in range(self.batch_in_epoch, self.steps_per_epoch):
            self._step(perm[b * batch_size:(b + 1) * batch_size], b)
            stopping = self.ctx.any_rank(bool(self.stop.signum))  # here or on another rank
            if self._checkpoint_due() or stopping:
                self._checkpoint(self.epoch, b + 1)
            if stopping:
                self.bar.close()
                raise self.stop.interrupted(self.run_dir, self.step)
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.epoch_shuffle_state = self.shuffle.get_state()
        self._log_epoch(time.perf_counter() - epoch_start)
        _check_weights(self.model, self.run_dir, self.step)
        if self.ctx.is_main:
            self._save_model()
        self._checkpoint(self.epoch, 0)
        if self.ctx.any_rank(bool(self.stop.signum)):
            self.bar.close()
            raise self.stop.interrupted(self.run_dir, self.step)

    def _step(self, idx: Tensor, b: int) -> None:
        """One optimiser step on the examples `idx` of global batch b (skipped when the loss
        or the gradients are not finite)."""
        config, ctx, dev, t = self.config, self.ctx, self.ctx.device, self.config.train
        if self.labelled is not None:  # M2: labelled examples join every batch
            pick = torch.randint(len(self.labelled), (self.labelled_batch,), generator=self.noise,
                                 device=dev).cpu()
            idx = torch.cat([idx, self.labelled[pick]])
        x = self.data.train.x[idx].to(dev, non_blocking=True)
        if config.data.binarize == "dynamic":
            x = dynamic_binarize(x, self.noise)
        if config.data.features:  # M1+M2: a fresh z1 ~ q(z1|x) (vaelab.data.features)
            x = sample_codes(x, self.data, idx, self.noise)
        num_samples, deterministic = config.objective.num_samples, self.objective.deterministic
        # every rank draws the noise of the whole batch and keeps its own rows, so N
        # processes take the steps one process would (up to floating-point rounding)
        eps = None if deterministic else ctx.shard(torch.randn(
            num_samples, len(idx), self.model.latent_dim, generator=self.noise, device=dev), dim=1)
        mean = ctx.batch_mean(len(idx))  # the objective's batch means: the global batch's
        idx, x = ctx.shard(idx), ctx.shard(x)  # this rank's part of the batch
        y_all = self.data.train.y
        y = self.model.condition(None if y_all is None else y_all[idx].to(dev))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=t.precision == "bf16"):
            out = self.net(x, y, num_samples=num_samples, deterministic=deterministic, eps=eps)
        # the KL warm-up and capacity schedules follow the progress in epochs
        loss = compute_loss(config.objective, out, x, epoch=self.epoch + b / self.steps_per_epoch,
                            mean=mean)
        self.optimizer.zero_grad(set_to_none=True)
        loss.loss.backward()
        grad_norm = _grad_norm(self.model, t.grad_clip)  # and clips it when grad_clip > 0
        if not ctx.all_finite(loss.loss.detach() + grad_norm):  # NaN/inf loss or gradients
            self.bad_steps, self.skipped = self.bad_steps + 1, self.skipped + 1
            if self.bad_steps >= t.max_bad_steps:
                self.bar.close()
                raise VaelabError(_divergence_message(self.bad_steps, self.step, config,
                                                      self.run_dir))
            return
        self.bad_steps = 0
        if t.lr_schedule != "constant":
            self.optimizer.param_groups[0]["lr"] = learning_rate(t, self.step, self.steps_per_epoch)
        self.optimizer.step()
        self.step += 1
        with torch.no_grad():
            self.sums += torch.stack([v.sum() for v in self.objective.terms(loss).values()])
        self.count += len(idx)
        self.bar.update(1)
        if self.step % t.log_every == 0:
            self._log_train(self.epoch + (b + 1) / self.steps_per_epoch, loss.metrics)

    def _log_train(self, progress: float, metrics: dict[str, float]) -> None:
        self.ctx.sum(self.sums)  # totals over all ranks (nothing to do in one process)
        count = self.ctx.sum_int(self.count)
        averages = dict(zip(self.objective.logged, (self.sums / max(count, 1)).tolist(),
                            strict=True))
        record = averages | {"step": self.step, "epoch": round(progress, 4)}
        record |= metrics | {"lr": self.optimizer.param_groups[0]["lr"]}  # the schedules
        if self.ctx.is_main:
            runfolder.append_jsonl(self.run_dir / runfolder.METRICS, {"split": "train"} | record)
        self.bar.set_postfix({k: f"{v:.2f}" for k, v in averages.items()})
        self.sums.zero_()
        self.count = 0

    def _log_epoch(self, seconds: float) -> None:
        """The epoch's record: time, skipped steps and the validation metrics; stops a run
        whose validation score fell far below the untrained model's."""
        record: dict[str, Any] = {"split": "epoch", "epoch": self.epoch, "step": self.step,
                                  "seconds": round(seconds, 3), "skipped_steps": self.skipped}
        if self.validate is not None and self.data.valid is not None:
            metrics = self.validate(self.model, self.data.valid)
            record |= {f"valid_{k}": v for k, v in metrics.items()}
        diverged = divergence(record, self.run_dir, self.config)
        if self.ctx.any_rank(diverged is not None) and diverged is None:  # rank 0 found it
            diverged = "training diverged (see rank 0's message)"
        if self.ctx.is_main:
            runfolder.append_jsonl(self.run_dir / runfolder.METRICS,
                                   record | ({"diverged": True} if diverged else {}))
        if diverged:
            self.bar.close()
            raise VaelabError(diverged)
        if "valid_elbo" in record:
            self.bar.set_postfix(epoch=self.epoch, valid_elbo=f"{record['valid_elbo']:.2f}")

    def _save_model(self) -> None:
        runfolder.save_model(self.run_dir, self.model, self.config, step=self.step,
                             epoch=self.epoch)

    def _checkpoint(self, epoch: int, batch: int) -> None:
        _check_weights(self.model, self.run_dir, self.step)  # never save non-finite weights
        if self.ctx.is_main:  # ranks hold the same weights; rank 0 writes them
            runfolder.save_checkpoint(self.run_dir, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "noise_state": self.noise.get_state(),
                "epoch_shuffle_state": self.epoch_shuffle_state, "epoch": epoch,
                "batch_in_epoch": batch, "step": self.step, "skipped_steps": self.skipped,
            })
        self.last_save = time.monotonic()

    def _checkpoint_due(self) -> bool:
        t = self.config.train
        by_steps = t.checkpoint_every and self.step % t.checkpoint_every == 0
        return bool(by_steps) or 0 < t.checkpoint_minutes * 60 <= time.monotonic() - self.last_save


def learning_rate(t: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step `step` (counted from 0) under t.lr_schedule."""
    if t.lr_schedule == "constant":
        return t.lr
    total = round((t.lr_decay_epochs or need(t.epochs, "train.epochs")) * steps_per_epoch)
    progress = min(step / max(total - 1, 1), 1.0)  # 0 at the first step, 1 at the last
    return t.lr_final + (t.lr - t.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))


def divergence(record: dict[str, Any], run: Path, config: Config) -> str | None:
    """Why training has diverged, or None: the validation score (the ELBO; the reconstruction
    of a plain autoencoder) fell below the untrained model's by more than that score's size.

    A learning rate far too high can leave every number finite while the model falls apart:
    after `--lr 10` the validation ELBO of digits reaches about -1e10 nats.
    """
    objective = OBJECTIVES[config.objective.name]
    key = "valid_reconstruction" if objective.deterministic else "valid_elbo"
    if not objective.trains_decoder or key not in record or record["epoch"] == 0:
        return None
    start = next((r[key] for r in runfolder.read_metrics(run)
                  if r.get("split") == "epoch" and r.get("epoch") == 0 and key in r), None)
    if start is None or record[key] >= start - max(abs(start), 1.0):
        return None
    name = key.removeprefix("valid_").replace("elbo", "ELBO")
    return (f"training diverged: the validation {name} fell from {start:.4g} nats (untrained) "
            f"to {record[key]:.4g} at epoch {record['epoch']}. The learning rate is likely too "
            f"high (train.lr={config.train.lr:g}): train again with a lower --lr (e.g. 1e-3) "
            f"or --grad-clip 1. {run} keeps the weights of epoch {record['epoch'] - 1}")


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
    return (f"posterior collapse: only {active} of {dims} latent dimensions are active "
            f"on validation data, and {collapsed} carry < {COLLAPSED_KL} nats of KL. Help: a KL warm-up "
            f"(--warmup linear or --warmup cyclical), free bits (--free-bits 0.1), or a smaller "
            f"--beta (now {config.objective.beta:g})")


def quote(path: Path) -> str:
    """A path as the shell reads it back (quoted when it has spaces or special characters)."""
    return shlex.quote(str(path))


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
        raise VaelabError(f"{run} already holds a run: pass --resume {quote(run)} to continue it, "
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
    return torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])


def _check_weights(model: VAE, run: Path, step: int) -> None:
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise VaelabError(f"training stopped at step {step}: the weights became non-finite; the "
                          f"last good checkpoint in {run} was kept (try a lower --lr or "
                          f"--grad-clip 1)")


def _divergence_message(bad_steps: int, step: int, config: Config, run: Path) -> str:
    """Why training gave up after `bad_steps` non-finite steps in a row, and what to try."""
    t, m = config.train, config.model
    real = LIKELIHOODS[need(m.likelihood, "model.likelihood")].support == "real"
    scale = f", or a Gaussian scale too small (--obs-scale {m.obs_scale:g})" if real else ""
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
            f"Resume with: vaelab train --resume {quote(run)}",
            exit_code=128 + (self.signum or signal.SIGINT))
