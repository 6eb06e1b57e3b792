"""The model family end to end: conv and conditional runs, objectives as settings, diagnostics."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vaelab
from vaelab.cli import main
from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.errors import VaelabWarning
from vaelab.runfolder import read_metrics


def config(epochs: int = 1, **sections: dict) -> Config:
    model = {"latent_dim": 4, "hidden": [32], "channels": [8, 16]} | sections.get("model", {})
    return Config(data=DataConfig(name="digits"), model=ModelConfig(**model),
                  objective=ObjectiveConfig(**sections.get("objective", {})),
                  train=TrainConfig(epochs=epochs, batch_size=64, log_every=5))


def fit(cfg: Config, run: Path):
    return vaelab.train(cfg, run, device="cpu", progress=False, figures=False)


@pytest.mark.parametrize(("arch", "cond_dim"), [("conv", 0), ("mlp", 10), ("conv", 10)])
def test_conv_and_conditional_models_survive_save_and_load(tmp_path, arch, cond_dim):
    result = fit(config(model={"arch": arch, "cond_dim": cond_dim}), tmp_path / "run")
    loaded = vaelab.load(tmp_path / "run")
    assert loaded.cond_dim == cond_dim
    x = result.data.test.x[:16]
    y = F.one_hot(result.data.test.y[:16], 10).float() if cond_dim else None
    result.model.eval()
    z = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x, y).mean, result.model.encode(x, y).mean,
                                   rtol=0, atol=0)
        torch.testing.assert_close(loaded.decode(z, y).mean, result.model.decode(z, y).mean,
                                   rtol=0, atol=0)


def test_conditional_training_and_sampling_by_label(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--data", "digits", "--conditional", "--epochs", "1", "--hidden", "32",
                 "--latent-dim", "2", "--runs-dir", str(runs), "--name", "cvae", "--quiet"]) == 0
    run = runs / "cvae"
    assert vaelab.load(run).cond_dim == 10
    assert main(["sample", str(run), "--label", "3", "-n", "5", "--save-array"]) == 0
    assert np.load(run / "samples.npy").shape == (5, 1, 8, 8)
    out = tmp_path / "all.png"
    assert main(["sample", str(run), "--label", "all", "-n", "4", "--out", str(out),
                 "--save-array"]) == 0
    grid = np.load(tmp_path / "all.npy")
    assert grid.shape == (40, 1, 8, 8) and out.is_file()
    # the rows share their z: row c is the same draws decoded with label c
    model = vaelab.load(run)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.decode(z, F.one_hot(torch.full((4,), 7), 10).float()).mean
    np.testing.assert_allclose(grid[28:32], expected.numpy(), atol=1e-6)
    capsys.readouterr()
    assert main(["sample", str(run), "--label", "10"]) == 2
    assert "classes 0 to 9" in capsys.readouterr().err


def test_label_on_an_unconditional_run_is_an_error(digits_run, capsys):
    assert main(["sample", str(digits_run), "--label", "3"]) == 2
    assert "--conditional" in capsys.readouterr().err


def test_conv_training_through_the_cli(tmp_path):
    assert main(["train", "--data", "digits", "--arch", "conv", "--channels", "8,16", "--hidden",
                 "32", "--epochs", "1", "--runs-dir", str(tmp_path), "--name", "conv",
                 "--quiet"]) == 0
    cfg = vaelab.load(tmp_path / "conv")
    assert cfg.x_shape == [1, 8, 8]
    assert (tmp_path / "conv" / "samples.png").is_file()


@pytest.mark.parametrize("flags", [["--objective", "iwae", "--samples", "3"],
                                   ["--objective", "ae"], ["--objective", "kl-only"],
                                   ["--beta", "0.5", "--warmup", "cyclical", "--warmup-epochs", "1"],
                                   ["--free-bits", "0.1"], ["--capacity", "5"]])
def test_every_objective_setting_trains_from_the_cli(tmp_path, flags, capsys):
    assert main(["train", "--data", "digits", "--epochs", "1", "--hidden", "32", "--latent-dim",
                 "2", "--runs-dir", str(tmp_path), "--name", "r", "--quiet", *flags]) == 0
    epoch = [r for r in read_metrics(tmp_path / "r") if r["split"] == "epoch"][-1]
    if "ae" in flags:  # a plain autoencoder reports no ELBO: its reconstruction only
        assert "valid_elbo" not in epoch and np.isfinite(epoch["valid_reconstruction"])
        out = capsys.readouterr().out
        assert "validation reconstruction" in out and "ELBO" not in out
    else:
        assert np.isfinite(epoch["valid_elbo"])


def test_kl_warmup_schedule_is_followed_during_training(tmp_path):
    fit(config(epochs=2, objective={"warmup": "linear", "warmup_epochs": 2.0, "beta": 2.0}),
        tmp_path / "run")
    weights = [(r["epoch"], r["kl_weight"]) for r in read_metrics(tmp_path / "run")
               if r["split"] == "train"]
    assert weights == sorted(weights) and weights[0][1] < 0.5 and weights[-1][1] > 1.5
    for epoch, w in weights:  # logged after the step: the weight was set at most 1 step earlier
        assert w == pytest.approx(2.0 * min(1.0, epoch / 2.0), abs=0.2)


def test_free_bits_hold_dimensions_at_their_floor_where_beta_collapses_them(tmp_path):
    """beta = 8 on digits collapses every dimension; free bits keep each one near its floor."""
    floor = 0.5
    with pytest.warns(VaelabWarning, match="posterior collapse.*--free-bits"):  # the remedies
        collapsed = fit(config(epochs=6, objective={"beta": 8.0}), tmp_path / "plain")
    with warnings.catch_warnings():
        warnings.simplefilter("error", VaelabWarning)  # no collapse warning here
        held = fit(config(epochs=6, objective={"beta": 8.0, "free_bits": floor}), tmp_path / "fb")
    plain_kl = np.array(collapsed.history[-1]["valid_kl_per_dim"])
    floored_kl = np.array(held.history[-1]["valid_kl_per_dim"])
    assert len(floored_kl) == 4 and collapsed.history[-1]["valid_active_units"] == 0
    assert (plain_kl < 0.05 * floor).all(), plain_kl
    # SGD noise makes the batch-mean KL hover just around the floor, from below as often as above
    assert (floored_kl > 0.7 * floor).all(), floored_kl


def test_diagnostics_are_logged_every_epoch(digits_run):
    epochs = [r for r in read_metrics(digits_run) if r["split"] == "epoch"]
    for r in epochs:
        assert len(r["valid_kl_per_dim"]) == 4
        # active: the posterior mean varies over x by more than 0.01 (Burda et al. 2016, 5.2)
        assert r["valid_active_units"] == sum(v > 0.01 for v in r["valid_posterior_mean_variance"])
        assert sum(r["valid_kl_per_dim"]) == pytest.approx(r["valid_kl"], rel=1e-3, abs=1e-3)


def test_conditional_needs_labels_and_enough_classes(tmp_path):
    with pytest.raises(vaelab.VaelabError, match="cond_dim 3"):
        fit(config(model={"cond_dim": 3}), tmp_path / "run")


def test_conv_and_conditional_on_a_colour_image_folder_of_odd_size(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    assert main(["train", "--data", str(tmp_path / "images"), "--arch", "conv", "--channels", "4,8",
                 "--hidden", "16", "--conditional", "--epochs", "1", "--runs-dir",
                 str(tmp_path / "runs"), "--name", "colour", "--quiet"]) == 0
    model = vaelab.load(tmp_path / "runs" / "colour")
    assert model.x_shape == [3, 9, 11] and model.cond_dim == 2
    assert main(["sample", str(tmp_path / "runs" / "colour"), "--label", "all", "-n", "3",
                 "--save-array"]) == 0
    assert np.load(tmp_path / "runs" / "colour" / "samples.npy").shape == (6, 3, 9, 11)


@pytest.mark.slow
def test_cvae_on_digits_draws_the_requested_class(tmp_path):
    """The CVAE claim on the embedded digits (benchmarks/family_cvae.py makes it on MNIST)."""
    from sklearn.linear_model import LogisticRegression

    assert main(["train", "--data", "digits", "--conditional", "--epochs", "30", "--latent-dim",
                 "4", "--runs-dir", str(tmp_path), "--name", "cvae", "--quiet"]) == 0
    data = vaelab.data.load_data(DataConfig(name="digits"))
    clf = LogisticRegression(max_iter=2000).fit(data.train.x.flatten(1).numpy(), data.train.y.numpy())
    hits = []
    for c in range(10):
        out = tmp_path / f"c{c}.png"
        assert main(["sample", str(tmp_path / "cvae"), "--label", str(c), "-n", "50", "--out",
                     str(out), "--save-array"]) == 0
        images = np.load(out.with_suffix(".npy")).reshape(50, -1)
        hits.append((clf.predict(images) == c).mean())
    assert np.mean(hits) >= 0.9, hits
