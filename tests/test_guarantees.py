"""The promises of the README's Guarantees section: atomic files, exact resume, Ctrl-C, locks, full disks,
and the numerical guards of the training loop."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from tests.conftest import tiny_config
from vaelab import runfolder, training
from vaelab.cli import main
from vaelab.errors import TrainingInterrupted, VaelabError


def train(run: Path, config: Any = None, resume: bool = False, overwrite: bool = False,
          **kw: Any) -> training.TrainResult:
    return vaelab.train(config or tiny_config(**kw), run, resume=resume, overwrite=overwrite,
                        device="cpu", progress=False, figures=False)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / runfolder.WEIGHTS))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture
def run_copy(digits_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session's trained run, free to damage."""
    return Path(shutil.copytree(digits_run, tmp_path / "run"))


# --- atomic files, disk full, read-only ---------------------------------------------------------

def fail_with(code: int, only: str = "") -> Any:
    """A stand-in for runfolder._write_file that fails like a full or read-only disk."""
    real = runfolder._write_file

    def write(tmp: Path, data: bytes) -> None:
        if only and not tmp.name.startswith(f".{only}."):
            return real(tmp, data)
        with open(tmp, "wb") as f:
            f.write(data[: len(data) // 2])  # half the file reached the disk
        raise OSError(code, os.strerror(code))
    return write


def test_disk_full_keeps_the_previous_checkpoint(run_copy: Path, monkeypatch, capsys) -> None:
    before = (run_copy / runfolder.CHECKPOINT).read_bytes()
    monkeypatch.setattr(runfolder, "_write_file", fail_with(errno.ENOSPC, runfolder.CHECKPOINT))
    code = main(["train", "--resume", str(run_copy), "--epochs", "6", "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"vaelab train: error: cannot write {run_copy / runfolder.CHECKPOINT}: the disk "
                   f"is full; the previous {runfolder.CHECKPOINT} is unchanged")
    assert (run_copy / runfolder.CHECKPOINT).read_bytes() == before
    assert not list(run_copy.glob(".*.tmp")), "the half-written temporary file was not removed"
    assert not (run_copy / runfolder.LOCK).exists(), "the lock outlived the failed training"
    monkeypatch.undo()
    assert main(["train", "--resume", str(run_copy), "--epochs", "6", "--quiet"]) == 0


def test_disk_full_on_fsync_keeps_the_previous_files(run_copy: Path, monkeypatch) -> None:
    names = (runfolder.CONFIG, runfolder.WEIGHTS)
    before = [(run_copy / name).read_bytes() for name in names]
    model, config = vaelab.load(run_copy), runfolder.read_config(run_copy)

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(runfolder.os, "fsync", fsync)
    with pytest.raises(VaelabError, match="disk is full; the previous config.json is unchanged"):
        runfolder.save_model(run_copy, model, config, step=1, epoch=1)
    with pytest.raises(VaelabError, match="disk is full; the previous model.safetensors is unch"):
        runfolder.write_bytes(run_copy / runfolder.WEIGHTS, b"new weights")
    assert [(run_copy / name).read_bytes() for name in names] == before


def test_read_only_folder_is_one_clear_line(tmp_path: Path, monkeypatch, capsys) -> None:
    def mkstemp(**kw: Any) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(runfolder.tempfile, "mkstemp", mkstemp)
    run = tmp_path / "ro"
    code = main(["train", "--epochs", "1", "--hidden", "32", "--latent-dim", "2", "--quiet",
                 "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "ro"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"vaelab train: error: cannot write {run / runfolder.CONFIG}: the file system is read-only")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_folder_by_permissions(tmp_path: Path, capsys) -> None:
    (tmp_path / "locked").mkdir(mode=0o555)
    code = main(["train", "--epochs", "1", "--quiet", "--runs-dir", str(tmp_path / "locked"),
                 "--name", "x"])
    assert code == 2
    assert "permission denied" in capsys.readouterr().err


def test_files_are_readable_by_others(digits_run: Path) -> None:
    for name in (runfolder.CONFIG, runfolder.WEIGHTS, runfolder.CHECKPOINT):
        assert (digits_run / name).stat().st_mode & 0o044 == 0o044 & ~runfolder.UMASK


def test_append_jsonl_reports_a_full_disk(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "metrics.jsonl"
    runfolder.append_jsonl(path, {"step": 1})
    monkeypatch.setattr(runfolder.os, "write", lambda fd, data: len(data) // 2)  # a short write
    with pytest.raises(VaelabError, match="cannot write .*metrics.jsonl: the disk is full"):
        runfolder.append_jsonl(path, {"step": 2, "elbo": -1.0})
    assert path.read_text() == '{"step": 1}\n', "the half line was not cut back off"


def test_resume_drops_lines_after_the_checkpoint_and_torn_lines(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(run, epochs=1, log_every=1)
    metrics = run / runfolder.METRICS
    with open(metrics, "a") as f:  # as if killed after logging steps the checkpoint lacks
        f.write(json.dumps({"split": "train", "step": 999}) + "\n" + '{"split": "tr')
    train(run, config=dataclasses.replace(runfolder.read_config(run)), resume=True)
    lines = metrics.read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines]  # every line parses
    assert 999 not in steps and steps == sorted(steps)


# --- Ctrl-C, SIGTERM, exact resume --------------------------------------------------------------

def interrupt_at(monkeypatch, step: int, signum: int = signal.SIGINT) -> None:
    """Sends `signum` to this process when the loop logs `step`, as a user pressing Ctrl-C."""
    real, sent = runfolder.append_jsonl, []

    def append(path: Path, record: dict[str, Any]) -> None:
        real(path, record)
        if record["step"] >= step and not sent:
            sent.append(os.kill(os.getpid(), signum))
    monkeypatch.setattr(runfolder, "append_jsonl", append)


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(tmp_path: Path, monkeypatch) -> None:
    train(tmp_path / "whole", epochs=2, log_every=1)
    interrupt_at(monkeypatch, 13)  # epoch 1 has 21 steps: a mid-epoch stop
    run = tmp_path / "stopped"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the suite runs in the background
    with pytest.raises(TrainingInterrupted) as e:
        train(run, epochs=2, log_every=1)
    assert e.value.exit_code == 130
    assert str(e.value) == (f"interrupted by SIGINT at step 13; checkpoint saved. "
                            f"Resume with: vaelab train --resume {run}")
    ckpt = runfolder.load_checkpoint(run)
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (13, 0, 13)
    assert signal.getsignal(signal.SIGINT) is before, "handler not restored"
    monkeypatch.undo()
    result = train(run, config=runfolder.read_config(run), resume=True)
    assert_same_weights(run, tmp_path / "whole")
    assert [r["step"] for r in result.history] == [0, 21, 42]  # 0: the untrained model


def test_sigterm_through_the_cli_exits_143(tmp_path: Path, monkeypatch, capsys) -> None:
    interrupt_at(monkeypatch, 30, signal.SIGTERM)  # logged at the end of epoch 2 (step 42)
    argv = ["train", "--epochs", "3", "--hidden", "32", "--latent-dim", "2", "--quiet",
            "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "t"]
    assert main(argv) == 143
    err = capsys.readouterr().err.strip()
    assert err == (f"vaelab train: interrupted by SIGTERM at step 42; checkpoint saved. "
                   f"Resume with: vaelab train --resume {tmp_path / 't'}")
    assert runfolder.load_checkpoint(tmp_path / "t")["step"] == 42


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path, monkeypatch) -> None:
    real = runfolder.save_checkpoint

    def slow_save(run: Path, state: dict[str, Any]) -> None:
        if state["step"] == 5:
            os.kill(os.getpid(), signal.SIGINT)  # pressed again while the checkpoint is written
        real(run, state)
    interrupt_at(monkeypatch, 5)
    monkeypatch.setattr(runfolder, "save_checkpoint", slow_save)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "run", epochs=1, log_every=1)
    runfolder.load_checkpoint(tmp_path / "run")  # still whole


def test_checkpoints_by_the_clock(tmp_path: Path, monkeypatch) -> None:
    saves = []
    real = runfolder.save_checkpoint
    monkeypatch.setattr(runfolder, "save_checkpoint",
                        lambda run, state: (saves.append(state["step"]), real(run, state)))
    train(tmp_path / "run", epochs=1, checkpoint_minutes=1e-9)
    assert saves == list(range(0, 22)) + [21]  # step 0, after every step, the epoch's end


def test_checkpoints_by_steps(tmp_path: Path, monkeypatch) -> None:
    saves = []
    real = runfolder.save_checkpoint
    monkeypatch.setattr(runfolder, "save_checkpoint",
                        lambda run, state: (saves.append(state["step"]), real(run, state)))
    train(tmp_path / "run", epochs=1, checkpoint_every=10)
    assert saves == [0, 10, 20, 21]


def test_kill_before_the_first_checkpoint_resumes_from_zero(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    runfolder.write_json(run / runfolder.CONFIG, tiny_config().to_dict())  # killed right here
    assert main(["train", "--resume", str(run), "--quiet", "--device", "cpu"]) == 0
    assert "no checkpoint yet, starting from step 0" in capsys.readouterr().err
    vaelab.load(run)


# --- the lock ---------------------------------------------------------------------------------

def test_a_locked_run_folder_is_refused(run_copy: Path, capsys) -> None:
    with runfolder.RunLock(run_copy).acquire():
        assert (run_copy / runfolder.LOCK).read_text().strip() == str(os.getpid())
        code = main(["train", "--resume", str(run_copy), "--epochs", "6", "--quiet"])
        assert code == 2
        assert capsys.readouterr().err.strip() == (
            f"vaelab train: error: {run_copy} is being written by another training "
            f"(process {os.getpid()}); wait for it or stop it")
        with pytest.raises(VaelabError, match="being written by another training"):
            train(run_copy, overwrite=True)  # --overwrite must not delete a live run
        assert (run_copy / runfolder.WEIGHTS).exists()
    assert not (run_copy / runfolder.LOCK).exists()


def test_a_stale_lock_is_taken_over(run_copy: Path) -> None:
    (run_copy / runfolder.LOCK).write_text("999999999\n")  # from a process killed long ago
    (run_copy / ".checkpoint.pt.abc123.tmp").write_bytes(b"half")  # its half-written file
    assert main(["train", "--resume", str(run_copy), "--epochs", "6", "--quiet"]) == 0
    assert not (run_copy / runfolder.LOCK).exists()
    assert not list(run_copy.glob(".*.tmp"))


# --- numerical safety ----------------------------------------------------------------------------

def nan_loss_on(monkeypatch, calls: set[int]) -> None:
    """Makes the loss of the given compute_loss calls (0-based) NaN."""
    real, count = training.compute_loss, [0]

    def compute_loss(*args: Any, **kw: Any) -> Any:
        loss = real(*args, **kw)
        count[0] += 1
        if count[0] - 1 in calls:
            loss = dataclasses.replace(loss, loss=loss.loss * float("nan"))
        return loss
    monkeypatch.setattr(training, "compute_loss", compute_loss)


def test_non_finite_losses_are_skipped_and_counted(tmp_path: Path, monkeypatch) -> None:
    nan_loss_on(monkeypatch, {3, 4, 10})
    result = train(tmp_path / "run", epochs=1)
    assert result.history[-1]["skipped_steps"] == 3
    assert result.history[-1]["step"] == 21 - 3
    assert all(torch.isfinite(w).all() for w in weights(tmp_path / "run").values())


def test_non_finite_gradients_are_skipped(tmp_path: Path, monkeypatch) -> None:
    real, hooked = training.build_model, [0]

    def build_model(config: Any) -> Any:
        model = real(config)
        first = next(model.parameters())

        def poison(grad: torch.Tensor) -> torch.Tensor:
            hooked[0] += 1
            return grad * float("inf") if hooked[0] <= 2 else grad
        first.register_hook(poison)
        return model
    monkeypatch.setattr(training, "build_model", build_model)
    result = train(tmp_path / "run", epochs=1)
    assert result.history[-1]["skipped_steps"] == 2


def test_divergence_stops_with_a_cause_and_keeps_the_checkpoint(tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:
    nan_loss_on(monkeypatch, set(range(25, 10_000)))
    run = tmp_path / "run"
    argv = ["train", "--epochs", "3", "--max-bad-steps", "4", "--checkpoint-every", "10",
            "--hidden", "32", "--quiet", "--device", "cpu", "--runs-dir", str(tmp_path),
            "--name", "run"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("vaelab train: error: training stopped: 4 steps in a row gave a "
                          "non-finite loss or gradient (at step 25)")
    assert "learning rate" in err and f"last good checkpoint is kept in {run}" in err
    ckpt = runfolder.load_checkpoint(run)
    assert ckpt["step"] == 21  # the epoch's end; steps 22-25 were fine but not yet saved
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_a_huge_learning_rate_is_caught(tmp_path: Path, capsys) -> None:
    argv = ["train", "--lr", "1e10", "--epochs", "2", "--hidden", "32", "--quiet",
            "--device", "cpu", "--runs-dir", str(tmp_path), "--name", "run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "train.lr=1e+10" in err and "Traceback" not in err
    vaelab.load(tmp_path / "run")  # the initial weights are still a valid run folder


def test_non_finite_weights_are_never_saved(tmp_path: Path) -> None:
    config = tiny_config()
    config.model.x_shape = [64]
    from vaelab.models import build_model

    model = build_model(config.model)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("nan")
    with pytest.raises(VaelabError, match="weights became non-finite; the last good checkpoint"):
        training._check_weights(model, tmp_path, step=7)


def test_gradient_clipping_bounds_the_norm() -> None:
    config = tiny_config()
    config.model.x_shape = [64]
    from vaelab.models import build_model

    model = build_model(config.model)
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    norm = training._grad_norm(model, clip=0.5)
    assert norm > 0.5
    after = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()])
    assert after == pytest.approx(0.5, rel=1e-4)
    assert training._grad_norm(model, clip=0.0) == pytest.approx(0.5, rel=1e-4)  # no clipping


def test_log_variance_is_clamped() -> None:
    config = tiny_config()
    config.model.x_shape = [64]
    from vaelab.models import build_model

    model = build_model(config.model)
    loc = torch.zeros(3, config.model.latent_dim)
    for log_var in (1e6, -1e6):
        model.encoder.forward = lambda x, y=None, v=log_var: (loc, torch.full_like(loc, v))
        scale = model.encode(torch.zeros(3, 64)).base_dist.scale
        assert torch.isfinite(scale).all() and (scale > 0).all()
