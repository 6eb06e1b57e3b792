"""The run folder never shows a stale or unfinished result, and what users read is right:
derived files record their model step, `report` remakes stale ones, `--resume` invalidates
them, an unfinished run says so; figures pair, cap and label what they show (issue 10)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vaelab
from vaelab import runfolder
from vaelab.cli import main
from vaelab.config import Config, DataConfig
from vaelab.data import Split
from vaelab.plots import compare_figure, paired_rows
from vaelab.workflows.figures import _input_name


def png_step(path: Path) -> int | None:
    return runfolder.derived_step(path)


@pytest.fixture()
def run(digits_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "r"
    shutil.copytree(digits_run, copy)
    return copy


def test_every_derived_file_records_the_model_step(run: Path, tmp_path: Path) -> None:
    state = runfolder.model_state(run)
    assert state.step == json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert state.finished and state.epoch == 5
    for name in ("samples.png", "reconstructions.png", "curves.png", "latent.png"):
        assert png_step(run / name) == state.step, name
    assert main(["report", str(run), "--samples", "5"]) == 0
    assert runfolder.derived_step(run / "report.html") == state.step
    assert runfolder.derived_step(run / "evaluation-test.json") == state.step


def test_the_report_scores_the_whole_test_set_after_a_partial_evaluate(run: Path) -> None:
    assert main(["evaluate", str(run), "--limit", "20", "-k", "5"]) == 0
    assert json.loads((run / "evaluation-test.json").read_text())["n"] == 20
    assert main(["report", str(run), "--samples", "5"]) == 0
    n_test = len(vaelab.data.load_data(runfolder.read_config(run).data).test)
    assert json.loads((run / "evaluation-test.json").read_text())["n"] == n_test > 20


def test_report_remakes_stale_figures_and_resume_invalidates_them(run: Path) -> None:
    old = runfolder.model_state(run).step
    assert main(["report", str(run), "--samples", "5"]) == 0
    made = sorted(p.name for p in run.iterdir() if p.suffix in (".png", ".html")
                  or p.name.startswith("evaluation-"))
    assert main(["train", "--resume", str(run), "--epochs", "6", "--quiet", "--device",
                 "cpu"]) == 0
    new = runfolder.model_state(run).step
    assert new > old
    # the report's own files went with the old weights; training remade its four figures
    assert not (run / "report.html").exists() and not (run / "traverse.png").exists()
    assert png_step(run / "samples.png") == new
    # a figure from other weights (copied in by hand, say) is remade by the next report
    Image.open(run / "samples.png").save(run / "traverse.png")  # no step recorded
    assert main(["report", str(run), "--samples", "5"]) == 0
    for name in made:
        assert runfolder.derived_step(run / name) == new, name


def test_an_unfinished_run_says_so(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = runfolder.read_config(run).updated({"train": {"epochs": 9}})  # as `--epochs 9`
    runfolder.write_json(run / runfolder.CONFIG, config.to_dict())  # before a kill
    state = runfolder.model_state(run)
    assert not state.finished and (state.epoch, state.epochs) == (5, 9)
    assert main(["sample", str(run), "-n", "4"]) == 0
    assert "unfinished: its weights are from epoch 5 of 9" in capsys.readouterr().err
    assert main(["report", str(run), "--samples", "5"]) == 0
    assert "unfinished: its weights are from epoch 5 of 9" in (run / "report.html").read_text()


@pytest.mark.parametrize("n", [5, 6, 8, 13])
def test_reconstructions_sit_under_their_own_originals(n: int) -> None:
    originals = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)
    recons = originals + 100
    ncol = min(8, n)
    grid = paired_rows(originals, recons, ncol).reshape(-1, ncol)  # (2 * rows, ncol)
    for i in range(n):
        r, c = divmod(i, ncol)
        assert grid[2 * r, c] == i and grid[2 * r + 1, c] == i + 100


def test_reconstruct_five_of_a_six_image_test_set(tmp_path: Path) -> None:
    x = (np.random.default_rng(0).random((60, 16)) > 0.5).astype(np.float32)
    np.save(tmp_path / "x.npy", x)  # 6 test images (a fixed 10 %)
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--epochs", "1", "--hidden", "8",
                 "--runs-dir", str(tmp_path), "--name", "r", "--quiet", "--device", "cpu"]) == 0
    for n in ("5", "32"):
        out = tmp_path / f"rec{n}.png"
        assert main(["reconstruct", str(tmp_path / "r"), "-n", n, "--out", str(out),
                     "--save-array"]) == 0
        pairs = np.load(out.with_suffix(".npy"))
        assert pairs.shape == (2, min(int(n), 6), 16)


def test_a_huge_sample_request_draws_a_capped_grid(run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.png"
    assert main(["sample", str(run), "-n", "5000", "--out", str(out), "--save-array"]) == 0
    assert "the PNG shows the first 400 of 5000 samples" in capsys.readouterr().out
    assert np.load(out.with_suffix(".npy")).shape == (5000, 1, 8, 8)
    width, height = Image.open(out).size
    assert width < 2000 and height < 2000


def test_interpolation_rows_name_the_classes() -> None:
    test = Split(np.zeros((3, 4), dtype=np.float32), None)
    import torch

    labelled = Split(torch.zeros(3, 4), torch.tensor([7, 2, 0]))
    assert _input_name("0", labelled, ["zero", "one", "two", "three", "4", "5", "6", "seven"]) \
        == "0 (seven)"
    assert _input_name("1", labelled, None) == "1 (2)"
    assert _input_name("1", test, None) == "1"


def test_compare_panels_show_the_prior() -> None:
    piled = np.zeros((50, 2)) + 0.01  # a KL-only model's codes: all at the origin
    spread = np.random.default_rng(0).normal(scale=30, size=(50, 2))
    fig = compare_figure([("ae", spread), ("kl-only", piled)], None, None, "t")
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo <= -2.5 and hi >= 2.5
        assert any(line.get_label() == "p(z): 1 and 2 sd" for line in ax.lines)
    assert fig.axes[0].get_xlim()[1] >= spread.max()


def test_run_names_are_names_and_hints_are_quoted(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--data", "digits", "--epochs", "1", "--hidden", "8", "--quiet",
            "--runs-dir", str(tmp_path), "--device", "cpu"]
    for name in ("../x", "a/b", ".."):
        assert main([*base, "--name", name]) == 2
        assert "a run name is one folder name" in capsys.readouterr().err
    assert not (tmp_path.parent / "x").exists()
    assert main([*base, "--name", "my run"]) == 0
    assert f"vaelab evaluate '{tmp_path}/my run'" in capsys.readouterr().out


def test_one_set_of_defaults_for_the_library_and_the_cli(tmp_path: Path) -> None:
    config = Config(data=DataConfig(name="digits"))
    config.train.epochs = 1
    before = config.to_dict()
    result = vaelab.train(config, tmp_path / "lib", device="cpu", progress=False, figures=False)
    assert config.to_dict() == before  # the caller's config is not changed
    assert main(["train", "--data", "digits", "--epochs", "1", "--runs-dir", str(tmp_path),
                 "--name", "cli", "--quiet", "--device", "cpu"]) == 0
    lib = json.loads((tmp_path / "lib" / "config.json").read_text())
    cli = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert lib["model"] == cli["model"] and lib["train"] == cli["train"]
    assert lib["model"]["hidden"] == [128, 128]  # digits' own default, not the generic one
    assert result.config.model.hidden == [128, 128]


def test_vaelab_datasets_lists_the_defaults_training_uses(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    digits = next(d for d in table["datasets"] if d["name"] == "digits")
    result = vaelab.train(Config(data=DataConfig(name="digits")).updated({"train": {"epochs": 1}}),
                          tmp_path / "r", device="cpu", progress=False, figures=False)
    resolved = result.config.to_dict()
    for section, values in digits["defaults"].items():
        for key, value in values.items():
            assert resolved[section][key] == (1 if key == "epochs" else value), key
    for section, values in table["generic_defaults"].items():  # what digits leaves unset
        for key, value in values.items():
            if key not in digits["defaults"].get(section, {}):
                assert resolved[section][key] == value, key
    assert main(["datasets"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in ("digits", "mnist", "frey-faces", "dsprites"))
    assert "hidden=[128, 128]" in text


def test_training_that_diverges_is_reported_not_printed_as_success(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", "digits", "--lr", "10", "--epochs", "3", "--quiet",
                 "--runs-dir", str(tmp_path), "--name", "r", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "training diverged" in err and "--lr" in err
    assert "validation ELBO" not in capsys.readouterr().out
    records = [r for r in runfolder.read_metrics(tmp_path / "r") if r["split"] == "epoch"]
    assert records[-1].get("diverged") and records[-1]["valid_elbo"] < 100 * records[0]["valid_elbo"]


def test_ordinary_training_is_not_called_divergent(digits_run: Path) -> None:
    records = [r for r in runfolder.read_metrics(digits_run) if r["split"] == "epoch"]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert not any(r.get("diverged") for r in records)
    assert records[-1]["valid_elbo"] > records[0]["valid_elbo"]


def test_warnings_are_one_line_in_vaelab_style(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        for c in "ab":
            Image.fromarray((rng.random((6, 6)) * 255).astype(np.uint8)).save(folder / c / f"{i}.png")
    (folder / "a" / "broken.png").write_bytes(b"not an image")
    assert main(["train", "--data", str(folder), "--epochs", "1", "--hidden", "8", "--quiet",
                 "--runs-dir", str(tmp_path), "--name", "r", "--device", "cpu"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line.lower()]
    assert err and all(line.startswith("vaelab train: warning: ") for line in err), err
    assert not any("UserWarning" in line or ".py:" in line for line in err)
