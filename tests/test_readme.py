"""Every `vaelab ...` command and the Python snippet in README.md run as written (issue 2)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from vaelab.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
FAST_DATASETS = {"digits"}  # others need dataset files and minutes: run them in the slow test


def readme_commands() -> list[str]:
    """The README's command lines that start with `vaelab`, comments stripped, in order."""
    commands = []
    for line in README.read_text().splitlines():
        text = line.strip()
        if text.startswith("vaelab ") and not text.split()[1].endswith(":"):  # not output
            commands.append(text.split("  #")[0].split(" #")[0].strip())
    return commands


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _is_fast(argv: list[str]) -> bool:
    """Whether a command can run as written in the fast suite (offline, seconds)."""
    if argv[0] != "train":
        return True
    dataset = argv[argv.index("--data") + 1] if "--data" in argv else "digits"
    return dataset in FAST_DATASETS and "--config" not in argv


def test_readme_has_the_quick_start() -> None:
    assert "vaelab train --data digits" in readme_commands()
    assert "pytest" in README.read_text()


def test_readme_commands_run_as_written(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ran = 0
    for command in readme_commands():
        argv = shlex.split(command)[1:]
        if not _is_fast(argv):
            continue  # exercised by test_readme_dataset_commands (slow)
        assert main([*argv, "--quiet"] if argv[0] == "train" else argv) == 0, command
        ran += 1
    assert ran >= 4
    for snippet in python_snippets():
        namespace: dict = {"x": torch.rand(4, 1, 8, 8)}
        exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 (our own README)


@pytest.mark.slow
def test_readme_dataset_commands(tmp_path, monkeypatch, shared_datasets) -> None:
    """The README's training commands on real datasets, shortened to one epoch."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAELAB_DATA", str(shared_datasets))
    monkeypatch.setenv("VAELAB_OFFLINE", "1")
    for command in readme_commands():
        argv = shlex.split(command)[1:]
        if not _is_fast(argv):
            argv = [str(shared_datasets) if a == "../shared/datasets" else a for a in argv]
            if "--config" in argv:  # recipes are relative to the repository
                i = argv.index("--config") + 1
                argv[i] = str(README.parent / argv[i])
            assert main([*argv, "--epochs", "1", "--quiet"]) == 0, command
