"""M1+M2 (M2 on the codes of a trained VAE, Kingma et al. 2014) and the classifier baselines:
the codes against the VAE's encoder, a fresh z1 per batch with exact resume, the baselines
against independent scikit-learn fits on M2's own labelled examples, and the bad inputs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import vaelab
from vaelab import runfolder, training
from vaelab.cli import main
from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.data import load_data
from vaelab.data.features import CODES
from vaelab.errors import VaelabWarning
from vaelab.workflows.baselines import Options, baseline, codes, summarise

TINY_M2 = ["--family", "m2", "--epochs", "1", "--hidden", "16", "--latent-dim", "2", "--quiet",
           "--device", "cpu"]


@pytest.fixture(scope="module")
def m1(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's digits VAE (encoding writes codes into its run folder)."""
    run = tmp_path_factory.mktemp("m1") / "m1"
    shutil.copytree(digits_run, run)
    return run


def encoder_codes(run: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """loc, scale and labels of every split, straight from the VAE's encoder network."""
    model = vaelab.load(run)
    data = load_data(runfolder.read_config(run).data)
    out = {}
    with torch.no_grad():
        for name in ("train", "valid", "test"):
            split = getattr(data, name)
            loc, log_var = model.encoder(split.x)
            out[name] = (loc, torch.exp(0.5 * log_var), split.y)
    return out


def m2_config(run: Path, labels: int = 30, epochs: int = 1, seed: int = 0) -> Config:
    return Config(data=DataConfig(name="digits", features=str(run), labels=labels),
                  model=ModelConfig(family="m2", latent_dim=2, hidden=[16]),
                  objective=ObjectiveConfig(name="m2"),
                  train=TrainConfig(epochs=epochs, batch_size=128, seed=seed))


def test_codes_are_the_encoders_means_and_scales(m1: Path) -> None:
    training.encode_run(m1)
    data = load_data(DataConfig(name="digits", features=str(m1)))
    expected = encoder_codes(m1)
    latent = runfolder.read_config(m1).model.latent_dim
    active = expected["train"][0].var(0) > 0.01  # the paper's std > 0.1 over x
    assert data.dims == active.nonzero()[:, 0].tolist()
    for name, (loc, _scale, y) in expected.items():
        split = getattr(data, name)
        assert split.x.shape == (len(y), int(active.sum())) and int(active.sum()) <= latent
        torch.testing.assert_close(split.x, loc[:, active], rtol=1e-5, atol=1e-6)
        assert torch.equal(split.y, y)
    torch.testing.assert_close(data.scale, expected["train"][1][:, active], rtol=1e-5, atol=1e-6)
    assert data.value_range == "real" and data.classes == [str(i) for i in range(10)]
    assert data.step == runfolder.model_state(m1).step


def test_inactive_dimensions_of_z1_are_dropped_unless_all_are(m1: Path, tmp_path: Path) -> None:
    """A dimension whose posterior mean hardly moves with x is prior noise: M2 never sees it."""
    training.encode_run(m1)
    run = tmp_path / "m1"
    shutil.copytree(m1, run)
    path = run / "codes.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    latent = tensors["train.loc"].shape[1]
    tensors["train.loc"][:, 1] = 0.05 * torch.randn(len(tensors["train.loc"]))  # variance 0.0025
    save_file(tensors, str(path), metadata=metadata)
    data = load_data(DataConfig(name="digits", features=str(run)))
    assert 1 not in (data.dims or []) and data.train.x.shape[1] == len(data.dims or []) < latent
    torch.testing.assert_close(data.test.x, tensors["test.loc"][:, data.dims])
    for name in ("train.loc", "valid.loc", "test.loc"):
        tensors[name][:] = tensors[name][:1]  # every x has the same code: nothing is active
    save_file(tensors, str(path), metadata=metadata)
    with pytest.warns(VaelabWarning, match="no dimension of z1 is active"):
        collapsed = load_data(DataConfig(name="digits", features=str(run)))
    assert collapsed.dims == list(range(latent))


def test_each_batch_draws_a_fresh_z1_and_resume_stays_exact(m1: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    draw = training.sample_codes

    def spy(loc: torch.Tensor, data: object, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        z1 = draw(loc, data, idx, gen)  # type: ignore[arg-type]
        seen.append((idx.clone(), z1.clone()))
        return z1

    monkeypatch.setattr(training, "sample_codes", spy)
    whole = training.fit(m2_config(m1, epochs=2), tmp_path / "whole", device="cpu",
                         progress=False)
    data = whole.data
    # z1 = loc + scale * eps: the standardised draws are N(0, 1), and new every time
    eps = torch.cat([(z1 - data.train.x[i]) / data.scale[i] for i, z1 in seen])
    assert abs(float(eps.mean())) < 4 / math.sqrt(eps.numel())
    assert abs(float(eps.std()) - 1) < 0.05
    n = len(data.train)
    first = {int(i): z for idx, z1 in seen[:len(seen) // 2] for i, z in zip(idx, z1, strict=True)
             if int(i) < n}
    later = [(int(i), z) for idx, z1 in seen[len(seen) // 2:] for i, z in zip(idx, z1, strict=True)]
    assert all(not torch.equal(first[i], z) for i, z in later if i in first)
    # 1 epoch + resume + 1 epoch gives the same weights, bit for bit
    training.fit(m2_config(m1, epochs=1), tmp_path / "split", device="cpu", progress=False)
    resumed = training.fit(m2_config(m1, epochs=2), tmp_path / "split", resume=True,
                           device="cpu", progress=False)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_m1_m2_trains_from_the_cli_and_draws_its_figures(m1: Path, tmp_path: Path) -> None:
    assert main(["train", "--features", str(m1), "--labels", "30", "--runs-dir", str(tmp_path),
                 "--name", "m1m2", *TINY_M2]) == 0
    run = tmp_path / "m1m2"
    config = runfolder.read_config(run)
    assert config.data.features == str(m1) and config.data.name == "digits"
    assert config.model.likelihood == "gaussian-learned"
    active = load_data(DataConfig(name="digits", features=str(m1))).dims or []
    assert config.model.x_shape == [len(active)] and config.model.cond_dim == 10
    assert all((run / f).is_file() for f in ("samples.png", "reconstructions.png", "latent.png"))
    assert len(json.loads((run / runfolder.LABELS).read_text())["train_indices"]) == 30


def test_m1_m2_figures_and_commands_show_images_through_m1(m1: Path, tmp_path: Path) -> None:
    """An M1+M2 run draws images: codes are M1's posterior means (the kept dimensions) and
    decoded codes go back through M1's decoder, the dropped dimensions at 0."""
    from vaelab.workflows.stacked import as_images

    result = training.fit(m2_config(m1, epochs=2), tmp_path / "m1m2", device="cpu",
                          progress=False)
    model, images = as_images(result.model, result.data)
    vae = vaelab.load(m1)
    assert model.x_shape == vae.x_shape == list(images.test.x.shape[1:])
    x, dims = images.test.x[:5], result.data.dims
    with torch.no_grad():
        torch.testing.assert_close(model.classify(x).probs,
                                   result.model.classify(result.data.test.x[:5]).probs)
        z1 = result.model.reconstruct(vae.encode(x).mean[:, dims])  # M2 on the codes
        full = torch.zeros(5, vae.latent_dim)
        full[:, dims] = z1
        torch.testing.assert_close(model.reconstruct(x), vae.decode(full).mean)
    assert main(["sample", str(tmp_path / "m1m2"), "--label", "2", "-n", "4", "--save-array"]) == 0
    assert np.load(tmp_path / "m1m2" / "samples.npy").shape == (4, *vae.x_shape)


def test_logreg_and_svm_on_codes_match_sklearn_on_m2s_labelled_examples(m1: Path,
                                                                        tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    seed = 3
    training.fit(m2_config(m1, labels=40, seed=seed), tmp_path / "m2", device="cpu",
                 progress=False)
    index = json.loads((tmp_path / "m2" / runfolder.LABELS).read_text())["train_indices"]
    expected = encoder_codes(m1)
    data = codes(m1)  # the active dimensions of z1
    x, y = expected["train"][0][index][:, data.dims].numpy(), expected["train"][2][index].numpy()
    x_test, y_test = expected["test"][0][:, data.dims].numpy(), expected["test"][2].numpy()
    n = len(y_test)
    for method, clf in (("logreg", LogisticRegression(max_iter=1000)), ("svm", SVC())):
        wrong = clf.fit(x, y).predict(x_test) != y_test
        result = baseline(data, 40, method=method, options=Options(seed=seed))
        assert abs(result.test_error - wrong.mean()) <= 1 / n + 1e-12, method
        e = result.test_error
        assert result.test_error_sem == pytest.approx(math.sqrt(e * (1 - e) / (n - 1)))
        assert result.n_test == n and result.labels == 40


def test_the_supervised_mlp_learns_from_labels_alone() -> None:
    data = load_data(DataConfig(name="digits"))
    result = baseline(data, 100, method="mlp", options=Options(seed=1, steps=300))
    again = baseline(data, 100, method="mlp", options=Options(seed=1, steps=300))
    assert result.settings["hidden"] == [128, 128]  # digits' model default, as M2's q(y|x)
    assert result.test_error == again.test_error  # the seed fixes init and minibatches
    assert result.test_error < 0.3  # chance is 0.9; 100 digits labels alone give ~0.15


def test_summarise_over_label_draws() -> None:
    mean, sem = summarise([0.1, 0.2, 0.3])
    assert mean == pytest.approx(0.2) and sem == pytest.approx(0.1 / math.sqrt(3))


def test_baseline_cli_prints_a_percentage_and_json(m1: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "--codes", str(m1), "--labels", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "logreg" and out["dataset"] == "digits" and out["labels"] == 20
    assert main(["baseline", "--codes", str(m1), "--labels", "20", "--method", "svm"]) == 0
    assert capsys.readouterr().out.startswith("test error ")


# --- bad inputs: exit code 2, one line on stderr ------------------------------------------------

def unlabelled_npy(tmp: Path) -> Path:
    path = tmp / "unlabelled.npy"
    np.save(path, np.random.default_rng(0).random((60, 5)).astype(np.float32))
    return path


BAD = {
    "more labels than examples": (lambda tmp, m1: ["train", "--labels", "5000", *TINY_M2],
                                  ["data.labels 5000", "at most"]),
    "fewer labels than classes": (lambda tmp, m1: ["train", "--labels", "5", *TINY_M2],
                                  ["data.labels 5", "one label per class (10)"]),
    "a dataset without labels": (lambda tmp, m1: ["train", "--data", unlabelled_npy(tmp),
                                                  "--labels", "10", *TINY_M2],
                                 ["no class labels"]),
    "features of another dataset": (lambda tmp, m1: ["train", "--features", m1, "--data",
                                                     "mnist", "--labels", "10", *TINY_M2],
                                    ["trained on digits, not mnist", "--data digits"]),
    "features of no run": (lambda tmp, m1: ["train", "--features", tmp / "nope", "--labels",
                                            "10", *TINY_M2], ["nope", "not a run folder"]),
    "baseline: more labels than examples": (lambda tmp, m1: ["baseline", "--labels", "5000"],
                                            ["5000", "at most"]),
    "baseline: fewer labels than classes": (lambda tmp, m1: ["baseline", "--labels", "3"],
                                            ["one label per class"]),
    "baseline: a dataset without labels": (lambda tmp, m1: ["baseline", "--data",
                                                            unlabelled_npy(tmp), "--labels", "10"],
                                           ["no class labels"]),
    "baseline: codes of another dataset": (lambda tmp, m1: ["baseline", "--codes", m1, "--data",
                                                            "mnist", "--labels", "10"],
                                           ["trained on digits, not mnist"]),
    "baseline: codes of no run": (lambda tmp, m1: ["baseline", "--codes", tmp / "nope",
                                                   "--labels", "10"], ["not a run folder"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_semi_supervised_inputs_are_one_line_errors(case: str, m1: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    make_argv, words = BAD[case]
    argv = [str(a) for a in make_argv(tmp_path, m1)]
    if argv[0] == "train":
        argv += ["--runs-dir", str(tmp_path / "runs")]
    code = main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert ": error: " in lines[0] and "Traceback" not in lines[0]
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.safetensors"))


def test_a_conditional_run_is_no_m1(m1: Path, tmp_path: Path) -> None:
    run = tmp_path / "cvae"
    shutil.copytree(m1, run)
    (run / CODES).unlink(missing_ok=True)
    d = json.loads((run / runfolder.CONFIG).read_text())
    d["model"]["cond_dim"] = 10
    (run / runfolder.CONFIG).write_text(json.dumps(d))
    with pytest.raises(vaelab.VaelabError, match="plain VAE"):
        training.encode_run(run)


def test_codes_of_older_weights_are_refused(m1: Path, tmp_path: Path) -> None:
    run = tmp_path / "m1"
    shutil.copytree(m1, run)
    training.encode_run(run)
    vaelab.train(runfolder.read_config(run).updated({"train": {"epochs": 6}}), run, resume=True,
                 device="cpu", progress=False, figures=False)
    with pytest.raises(vaelab.VaelabError, match="weights are now at step"):
        load_data(DataConfig(name="digits", features=str(run)))
    assert training.encode_run(run) == run / CODES  # re-encodes the new weights
    assert load_data(DataConfig(name="digits", features=str(run))).step == \
        runfolder.model_state(run).step


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_in_its_tiny_mode_and_resumes(tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "semi_supervised.py"
    spec = importlib.util.spec_from_file_location("semi_supervised", path)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "semi.jsonl"
    argv = ["--data", "digits", "--minutes", "0.05", "--labels", "50", "--speed-reps", "1",
            "--speed-n", "640", "--mlp-steps", "50", "--runs", str(tmp_path / "runs"),
            "--out", str(out)]
    bench.main(argv)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    speed = next(r["speed"] for r in records if "speed" in r)
    assert speed["m2_examples_per_s"] > 0 and speed["m2_step_cost"] > 1  # M2 does more work
    phases = {r["phase"] for r in records if "test_error" in r}
    assert phases == {"m2", "m1m2", "m1+logreg", "m1+svm", "mlp"}
    assert all(0 <= r["test_error"] <= 100 for r in records if "test_error" in r)
    m1_minutes = next(r["own_minutes"] for r in records if r.get("phase") == "m1" and r.get("done"))
    m1m2 = [r for r in records if r.get("phase") == "m1m2" and "train_minutes" in r]
    assert m1m2 and all(r["train_minutes"] >= m1_minutes for r in m1m2)
    assert out.with_suffix(".png").is_file()
    # stopped after M2's first score: --resume finishes the rest
    first_m2 = next(i for i, r in enumerate(records) if r.get("phase") == "m2")
    out.write_text("".join(json.dumps(r) + "\n" for r in records[:first_m2 + 1]))
    bench.main([*argv, "--resume"])
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum("speed" in r for r in again) == 1  # not measured twice
    assert {r["phase"] for r in again if r.get("done")} == {"m1", "m2", "m1m2"}
    assert {r["phase"] for r in again if "test_error" in r} == phases
    # --jobs 2: the two pipelines in two processes, appending to one file
    side = tmp_path / "side.jsonl"
    bench.main([*argv[:-1], str(side), "--runs", str(tmp_path / "runs2"), "--jobs", "2"])
    both = [json.loads(line) for line in side.read_text().splitlines()]
    assert {r["phase"] for r in both if r.get("done")} == {"m1", "m2", "m1m2"}
    assert {r["phase"] for r in both if "test_error" in r} == phases
