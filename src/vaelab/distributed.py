"""Data-parallel training across processes: `torchrun --nproc_per_node=N -m vaelab train ...`.

PyTorch DistributedDataParallel (https://pytorch.org/docs/stable/notes/ddp.html): every rank
holds the whole model, takes its shard of each global batch of the same epoch permutation, and
the gradients are averaged across ranks during backward. The objectives take every batch mean
over the global batch (`Context.batch_mean`, a vaelab.objectives.BatchMean): the per-example
sums are added up over the ranks first, so the loss is the whole batch's (free bits and
capacity are non-linear in the batch mean), and each rank's gradient is scaled so that after
the averaging every example weighs 1/batch_size, also when the shards differ in size. So N
ranks take the same steps as one process with the same batch_size (up to floating-point
summation order).

The noise (dynamic binarization, the reparameterisation's eps) comes from one stream that every
rank draws in step for the whole global batch, keeping its own rows: so stochastic objectives
match a one-process run too. Rank 0 alone writes the run folder, logs and draws figures.

One process (no torchrun) gets a `Context` whose methods do nothing, so the loop reads the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vaelab.errors import VaelabError
from vaelab.objectives import BatchMean

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """This process's place in the group: rank r of world_size, on `device`."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # setup() created the process group, so cleanup() destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files, logs and shows progress."""
        return self.rank == 0

    def check(self, n: int, batch_size: int) -> None:
        """Every rank needs at least one example of every global batch, the last one too."""
        last = n % batch_size
        if self.enabled and (batch_size < self.world_size or 0 < last < self.world_size):
            raise VaelabError(f"distributed training on {self.world_size} processes: train.batch_size "
                              f"({batch_size}) and the last batch of the epoch ({last or batch_size} "
                              f"of {n} examples) must each hold at least {self.world_size} examples")

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to call in the training step: DDP(model) across ranks, else model itself."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard(self, t: Tensor, dim: int = 0) -> Tensor:
        """This rank's contiguous part of a global batch: B rows along `dim` -> about B/N."""
        return t.tensor_split(self.world_size, dim=dim)[self.rank] if self.enabled else t

    def batch_mean(self, batch_size: int) -> BatchMean:
        """The mean over a global batch of `batch_size` examples, of which this rank holds its
        shard (see BatchMean); in one process, the plain mean."""
        if not self.enabled:
            return BatchMean()
        return BatchMean(batch_size, self.world_size, self.sum)

    def sum(self, t: Tensor) -> Tensor:
        """Sums t over ranks, in place; returns t."""
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def sum_int(self, n: int) -> int:
        if not self.enabled:
            return n
        return int(self.sum(torch.tensor([n], device=self.device)).item())

    def all_finite(self, t: Tensor) -> bool:
        """Whether t is finite on every rank (so all ranks skip a step, or all take it)."""
        if not self.enabled:
            return bool(torch.isfinite(t).all())
        bad = (~torch.isfinite(t.detach())).sum().reshape(1).float()
        return not bool(self.sum(bad).item())

    def any_rank(self, flag: bool) -> bool:
        """Whether flag is true on some rank (so a signal to one rank stops them all at the
        same step); in one process, flag itself."""
        if not self.enabled:
            return flag
        return bool(self.sum(torch.tensor([float(flag)], device=self.device)).item())

    def main_only(self, fn: Callable[[], T]) -> T | None:
        """fn() on rank 0 only (None elsewhere); if it raises, every rank raises, so no rank is
        left waiting for the others at the next collective."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:
                if not self.enabled:
                    raise
                error = e
        failed = self.broadcast(None if error is None else str(error))
        if error is not None:
            raise error
        if failed is not None:
            raise VaelabError(f"rank 0 stopped: {failed}")
        return result

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's value of a picklable object, on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def is_main_process() -> bool:
    """Whether this process is rank 0 of a torchrun launch, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0


def launched() -> bool:
    """Whether this process was started by torchrun (or similar) as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> Context:
    """Joins the process group torchrun describes (gloo on CPU, nccl on CUDA); one process: no-op.

    A group the caller already initialised is used as it is and left for the caller to end.
    """
    if not (launched() or (dist.is_available() and dist.is_initialized())):
        return Context(device=device)
    if not dist.is_available():
        raise VaelabError("distributed training: this PyTorch build has no torch.distributed")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), device, owns)


def cleanup(ctx: Context) -> None:
    """Ends the process group if setup() started it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
