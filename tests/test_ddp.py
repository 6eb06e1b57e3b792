"""DistributedDataParallel on CPU: two gloo processes under torchrun train the same model as one
process with the same global batch, write one run folder, and resume. The batch means of the
objectives are the global batch's (BatchMean), so shards of unequal size and the non-linear
free bits and capacity match one process too."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab.cli import main
from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.distributed import Context
from vaelab.models import build_model
from vaelab.objectives import BatchMean, compute_loss

# A stochastic objective with noise in two places (dynamic binarization, z = mu + sigma * eps):
# the ranks draw the whole batch's noise in step, so 2 processes take one process's steps.
# Free bits and capacity are non-linear in the batch mean, and an odd batch size splits into
# unequal shards: 33 + 32 examples, and 30 + 29 in the epoch's last batch (1294 = 19 * 65 + 59).
CONFIG = """
[data]
name = "digits"
binarize = "dynamic"
[model]
hidden = [32]
latent_dim = 4
[objective]
free_bits = 0.3
capacity = 8.0
capacity_epochs = 3
gamma = 20.0
[train]
epochs = 2
batch_size = 65
log_every = 5
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "vaelab", *args]


# the ranks import the vaelab under test (a relative PYTHONPATH would not reach them in tmp_path)
SOURCE = str(Path(vaelab.__file__).resolve().parents[1])
ENV = os.environ | {"OMP_NUM_THREADS": "1",
                    "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(torchrun_command(args), cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def records(run: Path, split: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_two_gloo_processes_match_one_process_and_resume(tmp_path: Path) -> None:
    config = tmp_path / "vae.toml"
    config.write_text(CONFIG)
    common = ["--config", str(config), "--device", "cpu", "--quiet"]
    assert main(["train", *common, "--runs-dir", str(tmp_path / "one"), "--name", "r"]) == 0
    one = tmp_path / "one" / "r"

    ddp_runs = tmp_path / "ddp"
    torchrun(["train", *common, "--runs-dir", str(ddp_runs), "--epochs", "1"], tmp_path)
    assert [p.name for p in ddp_runs.iterdir()] == ["digits"]  # one folder, named by rank 0
    two = ddp_runs / "digits"
    done = torchrun(["train", "--resume", str(two), "--epochs", "2", "--device", "cpu",
                     "--quiet"], tmp_path)
    assert done.stdout.count("run folder:") == 1  # rank 0 alone reports
    assert [p.name for p in ddp_runs.iterdir()] == ["digits"]

    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    assert w1.keys() == w2.keys()
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5, msg=name)
    train1, train2 = records(one, "train"), records(two, "train")
    assert [r["step"] for r in train1] == [r["step"] for r in train2]
    epochs1, epochs2 = records(one, "epoch"), records(two, "epoch")
    resumed_at = next(r["step"] for r in epochs2 if r["epoch"] == 1)
    for r1, r2 in zip(train1, train2, strict=True):  # averaged over both ranks' examples
        if r1["step"] - 5 < resumed_at < r1["step"]:
            continue  # the first record after a resume averages only the steps since it
        assert r2["elbo"] == pytest.approx(r1["elbo"], rel=1e-4)
    assert [r["epoch"] for r in epochs2] == [0, 1, 2]  # 0: the untrained model
    assert epochs2[-1]["valid_elbo"] == pytest.approx(epochs1[-1]["valid_elbo"], rel=1e-4)


def two_rank_losses(model: torch.nn.Module, config: ObjectiveConfig, x: torch.Tensor,
                    eps: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """Each rank's loss when x (B, ...) and the noise eps (S, B, D) are split into shards of
    `sizes`, with a fake all_reduce that sums over both ranks: a first pass records the local
    sums that each rank hands to all_reduce (they never depend on what it returns), the second
    returns their totals, call by call."""
    shards = list(zip(x.split(sizes), eps.split(sizes, dim=1), strict=True))
    handed: list[list[torch.Tensor]] = [[], []]
    for rank, (x_r, eps_r) in enumerate(shards):
        record = BatchMean(len(x), 2, lambda t, rank=rank: handed[rank].append(t.clone()) or t)
        compute_loss(config, model(x_r, num_samples=len(eps), eps=eps_r), x_r, mean=record)
    losses = []
    for x_r, eps_r in shards:
        totals = iter([a + b for a, b in zip(*handed, strict=True)])
        mean = BatchMean(len(x), 2, lambda t, totals=totals: t.copy_(next(totals)))
        losses.append(compute_loss(config, model(x_r, num_samples=len(eps), eps=eps_r), x_r,
                                   mean=mean).loss)
    return losses


# The floor and the targets lie between the shards' values and the whole batch's: the batch's
# KL of dimension 0 is 0.047 nats (shards: 0.040, 0.051), its KL 0.077 (0.066, 0.083), its
# free-bits penalty 0.137 (0.135, 0.141). So the plain per-shard means go wrong.
@pytest.mark.parametrize("config", [
    ObjectiveConfig(free_bits=0.045), ObjectiveConfig(capacity=0.075, gamma=50.0),
    ObjectiveConfig(free_bits=0.045, capacity=0.138, gamma=50.0),
    ObjectiveConfig(name="iwae", num_samples=3),
], ids=["free-bits", "capacity", "both", "iwae"])
def test_batch_mean_weighs_unequal_shards_as_one_process(config: ObjectiveConfig) -> None:
    """Shards of 3 and 5 examples: DDP averages the two ranks' gradients, and that average is
    the gradient of one process on the whole batch; the plain per-shard mean is not."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=3, hidden=[8], likelihood="bernoulli",
                                    x_shape=[1, 4, 4]))
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, 4, 4, generator=gen)
    eps = torch.randn(config.num_samples, 8, 3, generator=gen)  # (S, B, D)
    params = list(model.parameters())

    def gradient(loss: torch.Tensor) -> torch.Tensor:
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])

    one = compute_loss(config, model(x, num_samples=len(eps), eps=eps), x).loss
    ranks = two_rank_losses(model, config, x, eps, [3, 5])
    for loss in ranks:  # every rank sees the whole batch's loss
        torch.testing.assert_close(loss, one)
    per_shard = [compute_loss(config, model(x_r, num_samples=len(eps), eps=eps_r), x_r).loss
                 for x_r, eps_r in zip(x.split([3, 5]), eps.split([3, 5], dim=1), strict=True)]
    expected = gradient(one)
    torch.testing.assert_close(sum(gradient(loss) for loss in ranks) / 2, expected)
    naive = sum(gradient(loss) for loss in per_shard) / 2
    assert (naive - expected).norm() > 0.1 * expected.norm()


def test_the_context_of_a_rank_takes_global_batch_means() -> None:
    mean = Context(rank=1, world_size=2).batch_mean(7)
    assert (mean.batch_size, mean.world_size, mean.all_reduce is not None) == (7, 2, True)
    values = torch.arange(6.0).reshape(3, 2)
    torch.testing.assert_close(Context().batch_mean(7)(values), values.mean(0))  # one process


def test_one_process_context_does_nothing() -> None:
    ctx = Context()
    idx = torch.arange(10)
    assert ctx.shard(idx) is idx and not ctx.enabled and ctx.is_main
    assert ctx.sum_int(3) == 3 and ctx.broadcast("x") == "x"
    assert ctx.all_finite(torch.tensor(1.0)) and not ctx.all_finite(torch.tensor(float("nan")))
    assert ctx.any_rank(True) and not ctx.any_rank(False)
    ctx.check(n=1, batch_size=1)


def test_shards_cover_the_batch_once() -> None:
    idx = torch.randperm(13)
    parts = [Context(rank=r, world_size=3).shard(idx) for r in range(3)]
    assert torch.equal(torch.cat(parts), idx)
    assert [len(p) for p in parts] == [5, 4, 4]
    eps = torch.randn(2, 13, 4)  # (S, B, D): sharded along the batch
    parts = [Context(rank=r, world_size=3).shard(eps, dim=1) for r in range(3)]
    assert torch.equal(torch.cat(parts, dim=1), eps)


def worker_pid(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's worker process with this RANK, if it has started."""
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_signal_to_one_rank_stops_every_rank_with_a_checkpoint(tmp_path: Path) -> None:
    # Ctrl-C reaches the ranks at slightly different steps, and kill may reach only one: the
    # ranks agree on the step to stop at, rank 0 saves it, and no rank is left waiting
    config = tmp_path / "vae.toml"
    config.write_text(CONFIG.replace("epochs = 2", "epochs = 500"))
    run = tmp_path / "runs" / "digits"
    launcher = subprocess.Popen(torchrun_command(
        ["train", "--config", str(config), "--device", "cpu", "--quiet", "--runs-dir",
         str(tmp_path / "runs")]), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").is_file() or len(records(run, "epoch")) < 2:
            assert time.monotonic() < deadline and launcher.poll() is None, "no training seen"
            time.sleep(0.2)
        pid = worker_pid(launcher.pid, rank=1)
        assert pid is not None
        os.kill(pid, signal.SIGINT)  # rank 1 only
        output, _ = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    steps = {int(output.split(f"interrupted by {cause} at step ")[1].split(";")[0])
             for cause in ("SIGINT", "a signal to another rank")}  # rank 1's, rank 0's
    assert len(steps) == 1, output  # both ranks stopped after the same step
    stopped_at = steps.pop()
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == stopped_at
    end = checkpoint["epoch"] + 1
    torchrun(["train", "--resume", str(run), "--epochs", str(end), "--device", "cpu", "--quiet"],
             tmp_path)
    assert records(run, "epoch")[-1]["epoch"] == end


def test_the_readme_torchrun_command_runs_as_written(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    commands = [line.strip() for line in readme.read_text().splitlines()
                if line.strip().startswith("torchrun ")]
    assert commands
    env = ENV | {"PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(free_port())}
    for command in commands:  # torchrun is `python -m torch.distributed.run`, whatever PATH says
        argv = [sys.executable, "-m", "torch.distributed.run", *command.split()[1:]]
        done = subprocess.run([*argv, "--epochs", "1", "--quiet"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["digits-ddp"]


def test_divergence_stops_every_rank(tmp_path: Path) -> None:
    """Rank 0 alone validates; when it finds the run diverged, every rank stops (none waits)."""
    done = subprocess.run(torchrun_command(
        ["train", "--data", "digits", "--hidden", "16", "--latent-dim", "2", "--lr", "10",
         "--epochs", "3", "--batch-size", "64", "--runs-dir", str(tmp_path), "--quiet",
         "--device", "cpu"]), cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert "training diverged" in done.stderr
    epochs = records(tmp_path / "digits", "epoch")
    assert epochs[-1].get("diverged") and len(epochs) < 4
