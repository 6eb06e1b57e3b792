"""Kill `vaelab train` with SIGKILL at random moments and check that nothing is lost or torn.

    python benchmarks/kill_tally.py            # 20 kills, prints the tally
    python benchmarks/kill_tally.py --kills 5 --seed 1

Each round starts `vaelab train` (digits, tiny MLP, a checkpoint every 5 steps, a metrics line
every step) in a subprocess, waits until training has begun, kills it after a random delay, then
checks the run folder: config.json parses, the weights load (safetensors, `vaelab.load`), the
checkpoint loads with weights_only=True, every metrics.jsonl line parses, and at most one
checkpoint interval of logged steps is ahead of the checkpoint. Then `vaelab train --resume`
must finish and give the same weights, bit for bit, as a run that was never killed.

tests/test_kill.py runs the same rounds (fewer of them) in the slow test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

EPOCHS, CHECKPOINT_EVERY = 10, 5
CONFIG_TOML = f"""
[data]
name = "digits"
[model]
latent_dim = 2
hidden = [32]
[train]
epochs = {EPOCHS}
batch_size = 64
log_every = 1
checkpoint_every = {CHECKPOINT_EVERY}
"""


def train_command(workdir: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vaelab", "train", "--config", str(workdir / "kill.toml"),
            "--runs-dir", str(workdir / "runs"), "--name", name, "--quiet", "--device", "cpu",
            *extra]


def environment() -> dict[str, str]:
    """One thread everywhere, so killed-and-resumed and uninterrupted runs compute alike."""
    return os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def prepare(workdir: Path) -> Path:
    """Writes the config and trains the reference run (never killed); returns its weights."""
    (workdir / "kill.toml").write_text(CONFIG_TOML)
    in_process(train_command(workdir, "reference")[3:])
    return workdir / "runs" / "reference" / "model.safetensors"


def in_process(argv: list[str]) -> None:
    """`vaelab ARGV` in this process, with one thread like the subprocesses, output muted."""
    from vaelab.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    finally:
        torch.set_num_threads(threads)
    assert code == 0, f"vaelab {' '.join(argv)} exited with {code}"


def kill_once(workdir: Path, name: str, rng: random.Random, max_delay: float = 2.0) -> dict[str, Any]:
    """Starts a training, SIGKILLs it after a random delay once it has begun, checks the folder,
    resumes it to the end. Returns what happened; raises AssertionError on any broken promise."""
    run = workdir / "runs" / name
    proc = subprocess.Popen(train_command(workdir, name), env=environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    began = time.monotonic()
    while not (run / "checkpoint.pt").exists() and proc.poll() is None:
        if time.monotonic() - began > 120:
            proc.kill()
            raise AssertionError(f"{name}: training did not start within 120 s")
        time.sleep(0.01)
    time.sleep(rng.uniform(0, max_delay))
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    if not killed:
        assert proc.returncode == 0, f"{name}: training failed: {stderr.decode()[-500:]}"
    lost = check_folder(run)
    resume_to_end(run)
    return {"name": name, "killed": killed, "lost_steps": lost}


def check_folder(run: Path) -> int:
    """Every promise about a run folder after a crash; returns the logged steps the checkpoint
    lacks (work lost)."""
    import vaelab

    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == EPOCHS
    load_file(str(run / "model.safetensors"))
    vaelab.load(run)
    ckpt = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    text = (run / "metrics.jsonl").read_text() if (run / "metrics.jsonl").exists() else ""
    assert not text or text.endswith("\n"), f"{run}: metrics.jsonl ends with half a line"
    steps = [json.loads(line)["step"] for line in text.splitlines()]  # every line parses
    lost = max(steps, default=0) - ckpt["step"]
    assert lost <= CHECKPOINT_EVERY, f"{run}: {lost} logged steps are not in the checkpoint"
    return lost


def resume_to_end(run: Path) -> None:
    """`vaelab train --resume RUN` in this process (one thread, like the killed one)."""
    in_process(["train", "--resume", str(run), "--quiet", "--device", "cpu"])
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if '"train"' in line]
    assert steps == sorted(set(steps)), f"{run}: metrics.jsonl repeats or skips back a step"
    assert not list(run.glob(".*.tmp")), f"{run}: temporary files left behind"


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def tally(kills: int, seed: int, workdir: Path) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    reference = prepare(workdir)
    rounds = []
    for i in range(kills):
        result = kill_once(workdir, f"kill-{i}", rng)
        result["exact"] = same_weights(workdir / "runs" / result["name"] / "model.safetensors",
                                       reference)
        rounds.append(result)
        print(f"{result['name']:>8}: {'killed' if result['killed'] else 'finished first':>14}, "
              f"lost {result['lost_steps']} steps, resumed "
              f"{'bit-exact' if result['exact'] else 'NOT exact'}", flush=True)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="vaelab-kill-"))
    start = time.perf_counter()
    try:
        rounds = tally(args.kills, args.seed, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    killed = [r for r in rounds if r["killed"]]
    print(f"\n{len(rounds)} rounds in {time.perf_counter() - start:.0f} s: {len(killed)} killed "
          f"mid-training, {len(rounds) - len(killed)} finished before the kill")
    print(f"torn files: 0; resumes that finished: {len(rounds)}/{len(rounds)}; "
          f"bit-exact resumes: {sum(r['exact'] for r in rounds)}/{len(rounds)}; "
          f"most steps lost: {max((r['lost_steps'] for r in rounds), default=0)} "
          f"(checkpoint every {CHECKPOINT_EVERY})")


if __name__ == "__main__":
    main()
