"""SIGKILL `vaelab train` at random moments: the run folder must always load, resume, hold no
torn file, and lose at most one checkpoint interval. The rounds live in benchmarks/kill_tally.py
(which runs 20 and prints the tally); here 10 of them, in the slow suite."""

from __future__ import annotations

import importlib.util
import random
import signal
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def kill_tally() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kill_tally", ROOT / "benchmarks" / "kill_tally.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_random_kills_lose_nothing(tmp_path: Path) -> None:
    kt = kill_tally()
    rounds = kt.tally(kills=10, seed=20240611, workdir=tmp_path)
    assert all(r["exact"] for r in rounds), "a killed-and-resumed run differs from a whole one"
    assert sum(r["killed"] for r in rounds) >= 5, "most kills should land mid-training"


def test_sigterm_to_a_real_process_saves_and_says_how_to_resume(tmp_path: Path) -> None:
    """The whole path a user sees: a separate process, a real signal, exit code 143."""
    kt = kill_tally()
    (tmp_path / "kill.toml").write_text(kt.CONFIG_TOML)
    run = tmp_path / "runs" / "t"
    proc = subprocess.Popen(kt.train_command(tmp_path, "t"), env=kt.environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    began = time.monotonic()
    while not (run / "checkpoint.pt").exists() and time.monotonic() - began < 120:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 0.2))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the signal arrived (a very fast machine)")
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("vaelab train: interrupted by SIGTERM at step")
    assert err.strip().endswith(f"Resume with: vaelab train --resume {run}")
    kt.check_folder(run)
    kt.resume_to_end(run)
