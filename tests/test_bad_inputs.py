"""The bad-input catalogue: every case exits with code 2 and one line on stderr that names the
file, field or value at fault, and never shows a traceback. (Broken data files are covered by
tests/test_data.py.) Config parsing is fuzzed with hypothesis."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vaelab import runfolder
from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import VaelabError

TINY = ["--epochs", "1", "--hidden", "32", "--latent-dim", "2", "--quiet", "--device", "cpu"]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *expected: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("vaelab ") and ": error: " in lines[0], lines[0]
    for text in expected:
        assert text.lower() in lines[0].lower(), f"{text!r} not in {lines[0]!r}"


# --- each case: (name, setup(tmp, run) -> argv, words the message must contain) -----------------

def toml(tmp: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def train_with(text: str, name: str = "bad.toml") -> Callable[[Path, Path], list[Any]]:
    return lambda tmp, run: ["train", "--config", toml(tmp, text, name), "--quiet",
                             "--runs-dir", tmp / "runs"]


def edit_config(run: Path, section: str, key: str, value: Any) -> None:
    d = json.loads((run / runfolder.CONFIG).read_text())
    d[section][key] = value
    (run / runfolder.CONFIG).write_text(json.dumps(d))


def damaged(action: Callable[[Path], Any], *argv: Any) -> Callable[[Path, Path], list[Any]]:
    """Damages the run folder copy, then runs `argv` with RUN replaced by its path."""
    def setup(tmp: Path, run: Path) -> list[Any]:
        action(run)
        return [run if a == "RUN" else a for a in argv]
    return setup


def write(name: str, data: bytes) -> Callable[[Path], Any]:
    return lambda run: (run / name).write_bytes(data)


def real_npy(tmp: Path, run: Path) -> list[Any]:
    np.save(tmp / "real.npy", np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32))
    return ["train", "--data", tmp / "real.npy", "--likelihood", "bernoulli", *TINY,
            "--runs-dir", tmp]


def locked(tmp: Path, run: Path) -> list[Any]:
    lock = runfolder.RunLock(run).acquire()
    locked.held = lock  # type: ignore[attr-defined]  (released by the test)
    return ["train", "--resume", run, "--epochs", "9", "--quiet"]


def file_in_the_way(tmp: Path, run: Path) -> list[Any]:
    (tmp / "runs").mkdir()
    (tmp / "runs" / "x").write_text("not a folder")
    return ["train", *TINY, "--runs-dir", tmp / "runs", "--name", "x"]


def existing_run(tmp: Path, run: Path) -> list[Any]:
    return ["train", *TINY, "--runs-dir", run.parent, "--name", run.name]


def checkpoint_of(value: Any) -> Callable[[Path], Any]:
    return lambda run: torch.save(value, run / runfolder.CHECKPOINT)


def mismatched_checkpoint(run: Path) -> None:
    state = torch.load(run / runfolder.CHECKPOINT, weights_only=True)
    state["model"] = {k: v[..., :1] for k, v in state["model"].items()}
    torch.save(state, run / runfolder.CHECKPOINT)


CASES: list[tuple[str, Callable[[Path, Path], list[Any]], list[str]]] = [
    ("unknown dataset", lambda tmp, run: ["train", "--data", "digitz", *TINY],
     ["unknown dataset 'digitz'", "digits"]),
    ("missing data file", lambda tmp, run: ["train", "--data", tmp / "nope.npy", *TINY],
     ["no such file", "nope.npy"]),
    ("missing config file", lambda tmp, run: ["train", "--config", tmp / "none.toml", *TINY],
     ["config file not found", "none.toml"]),
    ("config: TOML syntax", train_with("[train\nepochs = 3"), ["bad.toml", "not valid toml"]),
    ("config: JSON syntax", train_with('{"train": ', "bad.json"), ["bad.json", "not valid json"]),
    ("config: not a table", train_with("[1, 2]", "bad.json"), ["bad.json", "expected a table"]),
    ("config: unknown key", train_with("[train]\nepoch = 3"),
     ["[train]", "unknown key 'epoch'", "did you mean 'epochs'"]),
    ("config: unknown section", train_with("[trainer]\nepochs = 3"),
     ["unknown key 'trainer'", "did you mean 'train'"]),
    ("config: wrong type", train_with('[train]\nepochs = "ten"'),
     ["[train] epochs", "expected int", "'ten'"]),
    ("config: section not a table", train_with("model = 3"), ["[model]", "expected a table"]),
    ("config: list of strings", train_with('[model]\nhidden = ["a"]'),
     ["[model] hidden", "expected list"]),
    ("config: negative epochs", train_with("[train]\nepochs = -3"), ["train.epochs must be >= 1"]),
    ("config: zero batch size", train_with("[train]\nbatch_size = 0"),
     ["train.batch_size must be >= 1"]),
    ("config: latent dim 0", train_with("[model]\nlatent_dim = 0"),
     ["model.latent_dim must be >= 1"]),
    ("config: negative lr", train_with("[train]\nlr = -0.1"), ["train.lr must be > 0"]),
    ("config: NaN lr", train_with("[train]\nlr = nan"), ["[train] lr", "finite"]),
    ("config: zero hidden size", train_with("[model]\nhidden = [32, 0]"), ["model.hidden"]),
    ("config: unknown likelihood", train_with('[model]\nlikelihood = "poisson"'),
     ["model.likelihood must be one of", "'poisson'"]),
    ("config: format version", train_with("format_version = 99"),
     ["format_version 99 is not supported"]),
    ("config: max_bad_steps 0", train_with("[train]\nmax_bad_steps = 0"),
     ["train.max_bad_steps must be >= 1"]),
    ("config: unknown lr schedule", train_with('[train]\nlr_schedule = "step"'),
     ["train.lr_schedule must be one of constant, cosine", "'step'"]),
    ("config: unknown precision", train_with('[train]\nprecision = "fp16"'),
     ["train.precision must be one of fp32, bf16", "'fp16'"]),
    ("config: lr_final above lr", train_with("[train]\nlr = 1e-3\nlr_final = 0.1"),
     ["train.lr_final must be in [0, train.lr]"]),
    ("config: negative checkpoint minutes", train_with("[train]\ncheckpoint_minutes = -1"),
     ["train.checkpoint_minutes must be >= 0"]),
    ("valid fraction out of range", lambda tmp, run: ["train", "--valid-fraction", "1.5", *TINY],
     ["data.valid_fraction must be in [0, 1)"]),
    ("negative obs scale", lambda tmp, run: ["train", "--obs-scale", "-1", *TINY],
     ["model.obs_scale must be > 0"]),
    ("unknown device", lambda tmp, run: ["train", *TINY, "--device", "tpu"],
     ["--device must be auto, cpu, cuda or mps", "'tpu'"]),
    ("bernoulli on real values", real_npy, ["bernoulli likelihood needs values in [0, 1]",
                                            "--likelihood gaussian"]),
    ("output folder holds a run", existing_run,
     ["already holds a run", "--resume", "--overwrite"]),
    ("run path is a file", file_in_the_way, ["is a file, not a run folder"]),
    ("resume a missing folder", lambda tmp, run: ["train", "--resume", tmp / "gone"],
     ["run folder not found", "gone"]),
    ("resume a non-run", lambda tmp, run: ["train", "--resume", tmp],
     ["is not a vaelab run folder", "config.json is missing"]),
    ("resume with other settings", lambda tmp, run: ["train", "--resume", run, "--lr", "0.1"],
     ["--resume continues a run with its own settings"]),
    ("resume with fewer epochs", lambda tmp, run: ["train", "--resume", run, "--epochs", "2"],
     ["--epochs 2", "has already trained 5 epochs"]),
    ("resume a locked run", locked, ["being written by another training", f"{os.getpid()}"]),
    ("corrupt checkpoint", damaged(write(runfolder.CHECKPOINT, b"\x00garbage"),
                                   "train", "--resume", "RUN", "--epochs", "9"),
     ["checkpoint.pt: corrupt checkpoint"]),
    ("checkpoint of another kind", damaged(checkpoint_of({"step": 3}),
                                           "train", "--resume", "RUN", "--epochs", "9"),
     ["checkpoint.pt: not a vaelab checkpoint", "missing model"]),
    ("checkpoint not matching config", damaged(mismatched_checkpoint,
                                               "train", "--resume", "RUN", "--epochs", "9"),
     ["checkpoint.pt does not match config.json"]),
    ("run without weights", damaged(lambda run: (run / runfolder.WEIGHTS).unlink(),
                                    "sample", "RUN"),
     ["model.safetensors is missing", "vaelab train --resume"]),
    ("weights not matching config", damaged(lambda run: edit_config(run, "model", "hidden", [48]),
                                            "evaluate", "RUN", "--samples", "0"),
     ["model.safetensors: weights do not match config.json"]),
    ("truncated weights", damaged(lambda run: (run / runfolder.WEIGHTS).write_bytes(
        (run / runfolder.WEIGHTS).read_bytes()[:100]), "reconstruct", "RUN"),
     ["model.safetensors: unreadable weights"]),
    ("corrupt config.json", damaged(write(runfolder.CONFIG, b'{"model": '), "sample", "RUN"),
     ["config.json: not valid json"]),
    ("config.json from a newer vaelab", damaged(
        lambda run: write(runfolder.CONFIG, b'{"format_version": 2}')(run), "evaluate", "RUN"),
     ["config.json: format_version 2 is not supported"]),
    ("config.json with a bad value", damaged(
        lambda run: edit_config(run, "model", "latent_dim", -1), "sample", "RUN"),
     ["config.json", "model.latent_dim must be >= 1"]),
    ("evaluate a missing run", lambda tmp, run: ["evaluate", tmp / "gone"],
     ["run folder not found", "gone"]),
    ("sample a missing run", lambda tmp, run: ["sample", tmp / "gone"], ["gone"]),
    ("reconstruct a missing run", lambda tmp, run: ["reconstruct", tmp / "gone"], ["gone"]),
    ("sample into a non-png", lambda tmp, run: ["sample", run, "--out", tmp / "x.txt"],
     ["--out", "x.txt", "expected a .png"]),
    ("sample into a missing folder", lambda tmp, run: ["sample", run, "--out", tmp / "no/x.png"],
     ["--out", "does not exist"]),
    ("evaluate --limit 0", lambda tmp, run: ["evaluate", run, "--limit", "0"],
     ["--limit must be >= 1"]),
    ("evaluate --samples -1", lambda tmp, run: ["evaluate", run, "--samples", "-1"],
     ["--samples must be >= 0"]),
]
if not torch.cuda.is_available():
    CASES += [
        ("train on cuda without one", lambda tmp, run: ["train", *TINY, "--device", "cuda"],
         ["--device cuda", "no cuda gpu"]),
        ("sample on cuda without one", lambda tmp, run: ["sample", run, "--device", "cuda"],
         ["--device cuda", "no cuda gpu"]),
    ]


@pytest.fixture
def run_copy(digits_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(digits_run, tmp_path / "run"))


def test_the_catalogue_has_at_least_30_cases() -> None:
    assert len({name for name, _, _ in CASES}) >= 30


@pytest.mark.parametrize(("setup", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(setup: Callable[[Path, Path], list[Any]], expected: list[str], tmp_path: Path,
                   run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = setup(tmp_path, run_copy)
    try:
        code, err = run_cli(argv, capsys)
    finally:
        if hasattr(locked, "held"):
            locked.held.release()
            del locked.held
    assert_one_line_error(code, err, *expected)


def test_the_run_folder_is_untouched_by_a_refused_training(run_copy: Path, capsys) -> None:
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    code, err = run_cli(existing_run(run_copy.parent, run_copy), capsys)
    assert code == 2
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == before


@pytest.mark.parametrize("argv", [["train", "--epochs", "0"], ["train", "--batch-size", "x"],
                                  ["sample"], ["train", "--bogus"], ["frobnicate"]])
def test_usage_errors_exit_2(argv: list[str], capsys) -> None:
    code, err = run_cli(argv, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("vaelab")


def test_an_unexpected_error_is_one_line_with_a_hint(monkeypatch, run_copy: Path, capsys) -> None:
    import vaelab.exploration

    def broken(*args: Any, **kw: Any) -> None:
        raise IndexError("index 7 is out of bounds for dimension 0 with size 3\n  deep internals")
    monkeypatch.setattr(vaelab.exploration, "sample", broken)
    code, err = run_cli(["sample", run_copy], capsys)
    assert code == 1
    assert err.strip() == ("vaelab sample: unexpected error: IndexError: index 7 is out of bounds "
                           "for dimension 0 with size 3 (this is a bug in vaelab or an input it "
                           "does not check; rerun as `vaelab --debug ...` for the traceback)")
    with pytest.raises(IndexError):
        main(["--debug", "sample", str(run_copy)])
    with pytest.raises(IndexError):
        main(["sample", str(run_copy), "--debug"])


def test_os_errors_and_memory_are_the_users_to_fix(monkeypatch, run_copy: Path, capsys) -> None:
    import vaelab.exploration

    def denied(*args: Any, **kw: Any) -> None:
        raise PermissionError(13, "Permission denied", "/data/x.png")
    monkeypatch.setattr(vaelab.exploration, "sample", denied)
    assert run_cli(["sample", run_copy], capsys) == (
        2, "vaelab sample: error: Permission denied: /data/x.png\n")

    def oom(*args: Any, **kw: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(vaelab.exploration, "sample", oom)
    code, err = run_cli(["sample", run_copy], capsys)
    assert code == 2 and "out of memory; try a smaller --batch-size" in err


# --- config parsing, fuzzed ----------------------------------------------------------------------

SECTIONS = {"data": Config().data, "model": Config().model, "objective": Config().objective,
            "train": Config().train}
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)


@st.composite
def config_dicts(draw: st.DrawFn) -> Any:
    """Mostly well-formed sections with real keys and random values; sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(values)
    d: dict[Any, Any] = {}
    for section, default in SECTIONS.items():
        if draw(st.booleans()):
            keys = list(vars(default))
            chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
            d[section] = {k: draw(values | st.just(getattr(default, k))) for k in chosen}
            if draw(st.integers(0, 9)) == 0:
                d[section][draw(st.text(max_size=6) | st.integers())] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        d[draw(st.text(max_size=6))] = draw(values)
    if draw(st.integers(0, 9)) == 0:
        d["format_version"] = draw(values)
    return d


@settings(max_examples=200, deadline=None)
@given(config_dicts())
def test_config_from_dict_raises_only_vaelab_errors(d: Any) -> None:
    try:
        config = Config.from_dict(d)
    except VaelabError as e:
        assert "\n" not in str(e)
        return
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_bad_checkpoint_never_unpickles(run_copy: Path, capsys) -> None:
    """A checkpoint.pt holding a pickled object is refused by weights_only=True, not run."""
    import pickle  # only to build the hostile file  # noqa: S403

    class Evil:
        def __reduce__(self) -> Any:
            return (os.system, ("touch " + str(run_copy / "pwned"),))
    (run_copy / runfolder.CHECKPOINT).write_bytes(pickle.dumps(Evil()))
    code, err = run_cli(["train", "--resume", run_copy, "--epochs", "9"], capsys)
    assert_one_line_error(code, err, "corrupt checkpoint")
    assert not (run_copy / "pwned").exists()
