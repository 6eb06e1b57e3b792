"""Each core command end to end through main(argv), in-process (issue 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vaelab.cli import main


def test_train_writes_a_complete_run_folder(tmp_path, capsys) -> None:
    code = main(["train", "--data", "digits", "--epochs", "2", "--hidden", "32",
                 "--latent-dim", "2", "--runs-dir", str(tmp_path), "--quiet", "--device", "cpu"])
    assert code == 0
    run = tmp_path / "digits"
    for name in ["config.json", "model.safetensors", "checkpoint.pt", "metrics.jsonl",
                 "samples.png", "reconstructions.png", "curves.png", "latent.png"]:
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["latent_dim"] == 2 and config["model"]["hidden"] == [32]
    out = capsys.readouterr().out
    assert "validation ELBO" in out and str(run) in out
    # a second run with the same dataset gets a new folder instead of overwriting
    assert main(["train", "--data", "digits", "--epochs", "1", "--hidden", "8", "--runs-dir",
                 str(tmp_path), "--quiet", "--device", "cpu"]) == 0
    assert (tmp_path / "digits-2" / "model.safetensors").is_file()


def test_train_resume_continues_to_more_epochs(tmp_path) -> None:
    args = ["train", "--data", "digits", "--hidden", "16", "--runs-dir", str(tmp_path),
            "--name", "r", "--quiet", "--device", "cpu"]
    assert main([*args, "--epochs", "1"]) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "--epochs", "2", "--quiet",
                 "--device", "cpu"]) == 0
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "r" / "metrics.jsonl").open()
              if '"split": "epoch"' in line]
    assert epochs == [0, 1, 2]  # 0: the untrained model, logged once


def test_train_reads_a_toml_config_and_flags_win(tmp_path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[model]\nlatent_dim = 3\nhidden = [16]\n[train]\nepochs = 1\nbatch_size = 32\n')
    assert main(["train", "--config", str(toml), "--batch-size", "64", "--runs-dir",
                 str(tmp_path), "--name", "c", "--quiet", "--device", "cpu"]) == 0
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    assert config["model"]["latent_dim"] == 3 and config["train"]["batch_size"] == 64


def test_evaluate_prints_a_table_and_json(digits_run, capsys) -> None:
    assert main(["evaluate", str(digits_run), "--samples", "20"]) == 0
    table = capsys.readouterr().out
    # a Bernoulli on grey levels: a cross-entropy, with the note on how to get a likelihood
    assert "cross-entropy, IS k=20 (nats)" in table and "s.e.m." in table
    assert "--binarize dynamic" in table and "active units" in table
    labels = [line.split("  ")[0] for line in table.splitlines()]
    assert not [label for label in labels if label.startswith(("log p(x)", "NLL", "bits/dim"))]
    assert main(["evaluate", str(digits_run), "--samples", "20", "--json", "--limit", "50"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 50 and result["k"] == 20
    assert result["quantity"]["value_range"] == "unit" and "nll" not in result
    assert result["cross_entropy_sem"] > 0
    assert json.loads((digits_run / "evaluation-test.json").read_text()) == result


def test_sample_writes_png_and_array(digits_run, tmp_path) -> None:
    out = tmp_path / "s.png"
    assert main(["sample", str(digits_run), "-n", "12", "--out", str(out), "--save-array"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (12, 1, 8, 8) and 0 <= images.min() and images.max() <= 1


def test_reconstruct_writes_png_and_array(digits_run, tmp_path) -> None:
    out = tmp_path / "r.png"
    assert main(["reconstruct", str(digits_run), "-n", "8", "--out", str(out),
                 "--save-array"]) == 0
    arrays = np.load(tmp_path / "r.npy")
    assert arrays.shape == (2, 8, 1, 8, 8)


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "reconstruct"])
def test_help_shows_an_example(command, capsys) -> None:
    assert main([command, "--help"]) == 0
    assert "example:" in capsys.readouterr().out


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--data", "digts"], "did you mean 'digits'"),
    (["evaluate", "/nonexistent/run"], "run folder not found"),
    (["sample", "/nonexistent/run"], "run folder not found"),
])
def test_bad_input_is_one_line_exit_2(argv, fragment, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1 and "Traceback" not in err
