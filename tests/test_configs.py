"""The commands in the comments of configs/*.toml run as written (shortened: one epoch, a few
test images), so a recipe's instructions cannot drift from the code."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def commented_commands(path: Path) -> list[list[str]]:
    """The `#   vaelab ...` and `#   python ...` lines of a recipe, split like a shell would."""
    commands = []
    for line in path.read_text().splitlines():
        text = line.lstrip("#").strip()
        if line.startswith("#") and text.split(" ", 1)[0] in ("vaelab", "python"):
            commands.append(shlex.split(text.split("  #")[0]))
    return commands


def test_every_recipe_says_how_to_run_it() -> None:
    assert CONFIGS
    for path in CONFIGS:
        assert any(c[:2] == ["vaelab", "train"] for c in commented_commands(path)), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_recipe_commands_run(path: Path, tmp_path: Path, monkeypatch, shared_datasets) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAELAB_DATA", str(shared_datasets))
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    for argv in commented_commands(path):
        argv = [str(ROOT / a) if a.startswith(("configs/", "benchmarks/")) else a for a in argv]
        if argv[0] == "python":  # a benchmark: a minute's budget cut to seconds
            short = ["--minutes", "0.05", "--eval-every", "1", "--k", "5", "--n", "20",
                     "--final-n", "20", "--run", str(tmp_path / "bench"),
                     "--out", str(tmp_path / "bench.jsonl")]
            done = subprocess.run([sys.executable, *argv[1:], *short], capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
        elif argv[1] == "train":
            assert main([*argv[1:], "--epochs", "1", "--quiet"]) == 0, argv
        else:  # a command on the run the recipe trained
            assert main([*argv[1:], "--limit", "20"]) == 0, argv
