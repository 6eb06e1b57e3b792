"""DistributedDataParallel on CPU: two gloo processes under torchrun train the same model as one
process with the same global batch, write one run folder, and resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaelab.cli import main
from vaelab.distributed import Context

# A deterministic objective (the plain autoencoder, no binarization), so the only differences
# between 1 and 2 processes are the data sharding and the gradient averaging under test.
CONFIG = """
[data]
name = "digits"
[model]
hidden = [32]
latent_dim = 4
[objective]
name = "ae"
[train]
epochs = 2
batch_size = 64
log_every = 5
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "vaelab", *args]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def records(run: Path, split: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["split"] == split]


def test_two_gloo_processes_match_one_process_and_resume(tmp_path: Path) -> None:
    config = tmp_path / "ae.toml"
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
    resumed_at = epochs2[0]["step"]
    for r1, r2 in zip(train1, train2, strict=True):  # averaged over both ranks' examples
        if r1["step"] - 5 < resumed_at < r1["step"]:
            continue  # the first record after a resume averages only the steps since it
        assert r2["elbo"] == pytest.approx(r1["elbo"], rel=1e-4)
    assert [r["epoch"] for r in epochs2] == [1, 2]
    assert epochs2[-1]["valid_elbo"] == pytest.approx(epochs1[-1]["valid_elbo"], rel=1e-4)


def test_one_process_context_does_nothing() -> None:
    ctx = Context()
    idx = torch.arange(10)
    assert ctx.shard(idx) is idx and not ctx.enabled and ctx.is_main
    assert ctx.sum_int(3) == 3 and ctx.broadcast("x") == "x" and ctx.seed(5) == 5
    assert ctx.all_finite(torch.tensor(1.0)) and not ctx.all_finite(torch.tensor(float("nan")))
    ctx.check(n=1, batch_size=1)


def test_shards_cover_the_batch_once() -> None:
    idx = torch.randperm(13)
    parts = [Context(rank=r, world_size=3).shard(idx) for r in range(3)]
    assert torch.equal(torch.cat(parts), idx)
    assert [len(p) for p in parts] == [5, 4, 4]
    assert len({Context(rank=r, world_size=3).seed(7) for r in range(3)}) == 3
