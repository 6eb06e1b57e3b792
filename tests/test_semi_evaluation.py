"""M2 (Kingma et al. 2014) after training: the classifier's test error and confusion matrix,
log p(x) with y summed out, class analogies, conditional samples, and the report."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelab import exploration
from vaelab.cli import main
from vaelab.config import ModelConfig
from vaelab.data import Split, load_data
from vaelab.errors import VaelabError
from vaelab.evaluation import classification_error, evaluate, log_likelihood
from vaelab.models import M2, build_model, one_hot
from vaelab.runfolder import derived_step, load, model_state, read_config
from vaelab.workflows import figures, write_report

D, K = 6, 3  # pixels and classes of the synthetic M2s


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny M2 trained on digits with 50 labels, once for this module."""
    runs = tmp_path_factory.mktemp("m2")
    assert main(["train", "--data", "digits", "--family", "m2", "--labels", "50", "--epochs", "3",
                 "--latent-dim", "4", "--hidden", "32", "--runs-dir", str(runs), "--name", "m2",
                 "--quiet"]) == 0
    return runs / "m2"


@pytest.fixture(scope="module")
def trained(run: Path) -> tuple[M2, Split]:
    model = load(run)
    assert isinstance(model, M2)
    return model, load_data(read_config(run).data).test


def tiny_m2(seed: int = 0, latent: int = 2) -> M2:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(family="m2", latent_dim=latent, hidden=[16],
                                    likelihood="bernoulli", x_shape=[D], cond_dim=K))
    assert isinstance(model, M2)
    return model.eval()


def bad(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err


# ---------------------------------------------------------------- classification error
def test_evaluate_reports_the_classifiers_test_error_and_confusion(
        run: Path, trained: tuple[M2, Split], capsys: pytest.CaptureFixture[str]) -> None:
    model, test = trained
    assert main(["evaluate", str(run), "-k", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)  # stdout is the JSON alone
    with torch.no_grad():
        predicted = model.classify(test.x).probs.argmax(-1)
    wrong = (predicted != test.y).double().numpy()
    assert result["test_error"] == pytest.approx(wrong.mean(), abs=1e-12)
    assert result["test_error_sem"] == pytest.approx(wrong.std() / math.sqrt(len(wrong)), rel=1e-9)
    confusion = np.array(result["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == len(test)
    assert (confusion.sum() - np.trace(confusion)) / len(test) == pytest.approx(result["test_error"])
    assert (confusion.sum(1) == np.bincount(test.y.numpy(), minlength=10)).all()  # rows: true
    assert (confusion.sum(0) == np.bincount(predicted.numpy(), minlength=10)).all()  # columns
    # log p(x) with y summed out: plain keys (not _given_y), and the ELBO is below it
    q = result["quantity"]
    assert q["sums_y"] and not q["conditional"] and "cross_entropy_given_y" not in result
    assert -result["cross_entropy"] > result["elbo"]
    png = run / "confusion.png"
    assert png.stat().st_size > 5000 and derived_step(png) == model_state(run).step

    assert main(["evaluate", str(run), "-k", "2", "--limit", "50"]) == 0
    table = capsys.readouterr().out
    error = (predicted[:50] != test.y[:50]).double().mean().item()
    assert re.search(rf"test error \(%\).*{100 * error:.2f} \+- ", table), table
    assert "y summed out" in table and "KL(q(y,z|x) || p(y,z))" in table
    assert np.array(json.loads((run / "evaluation-test.json").read_text())["confusion"]).sum() == 50


def test_a_classifier_that_always_says_one_class() -> None:
    model = tiny_m2()
    layer = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(layer.weight)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # always class 1
    y = torch.tensor([0, 1, 1, 2, 2, 2, 1, 0])
    error, sem, confusion = classification_error(model, Split(torch.rand(8, D), y))
    assert error == pytest.approx(5 / 8) and sem == pytest.approx(math.sqrt(5 / 8 * 3 / 8 / 8))
    assert confusion.tolist() == [[0, 2, 0], [0, 3, 0], [0, 3, 0]]
    with pytest.raises(VaelabError, match="every one must be known"):
        classification_error(model, Split(torch.rand(2, D), torch.tensor([0, -1])))
    with pytest.raises(VaelabError, match="no class labels"):
        classification_error(model, Split(torch.rand(2, D)))


# ---------------------------------------------------------------- log p(x), y summed out
def test_log_px_with_y_summed_out_matches_quadrature() -> None:
    # log p(x) = logsumexp_y [log p(x|y) - log K], each p(x|y) = integral p(x|y,z) N(z) dz by
    # Gauss-Hermite quadrature on the 2-d latent
    model = tiny_m2(seed=3)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)  # a decoder that varies with z and y: the posterior is not the prior
    x = torch.bernoulli(torch.full((8, D), 0.4), generator=torch.Generator().manual_seed(5))
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # weight exp(-z^2 / 2)
    z = torch.tensor(np.stack(np.meshgrid(nodes, nodes), -1).reshape(-1, 2), dtype=torch.float32)
    log_w = torch.tensor(np.log(np.outer(weights, weights)).reshape(-1) - math.log(2 * math.pi))
    per_class = []
    with torch.no_grad():
        for c in range(K):
            y = one_hot(torch.full((len(z),), c), K)
            log_px = model.decode(z[:, None].expand(-1, len(x), -1), y[:, None]).log_prob(x)
            per_class.append(torch.logsumexp(log_px.double() + log_w[:, None], 0))  # (B,)
    exact_given_y = torch.stack(per_class)  # (K, B)
    exact = torch.logsumexp(exact_given_y, 0) - math.log(K)  # (B,)
    assert (exact_given_y.max(0).values - exact_given_y.min(0).values).mean() > 1  # y matters
    result = evaluate(model, Split(x), k=4000)
    assert result["log_likelihood"] == pytest.approx(exact.mean().item(), abs=0.02)
    assert result["elbo"] < result["log_likelihood"] - 0.05  # the bound is visibly below
    assert "test_error" not in result and "log_likelihood_given_y" not in result  # no labels
    # the conditional path gives each log p(x|y)
    gen = torch.Generator().manual_seed(0)
    for c in range(K):
        given = log_likelihood(model, x, one_hot(torch.full((len(x),), c), K), 4000, gen)
        assert given.mean().item() == pytest.approx(exact_given_y[c].mean().item(), abs=0.02)


def test_m2_numbers_depend_on_the_seed_not_on_batch_size_or_budget() -> None:
    model = tiny_m2(seed=1)
    x = torch.bernoulli(torch.full((7, D), 0.5), generator=torch.Generator().manual_seed(2))
    split = Split(x, torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    whole = evaluate(model, split, k=300, seed=4)
    pieces = evaluate(model, split, k=300, seed=4, batch_size=3, budget=200)
    for key in ("log_likelihood", "elbo", "test_error", "kl"):
        assert pieces[key] == pytest.approx(whole[key], abs=1e-5)
    assert evaluate(model, split, k=300, seed=5)["log_likelihood"] != whole["log_likelihood"]
    with pytest.raises(VaelabError, match="objective m2"):
        evaluate(model, split, k=3, objective="elbo")


# ---------------------------------------------------------------- analogies
def test_analogies_decode_one_style_as_every_class(trained: tuple[M2, Split]) -> None:
    model, test = trained
    x, y = test.x[:4], test.y[:4]
    images = exploration.analogies(model, x, y)
    assert images.shape == (4, 10, 1, 8, 8)
    with torch.no_grad():  # cells (2, 7) and (2, 3) recomputed: x_2's style given its label
        z = model.encode(x[2:3], one_hot(y[2:3], 10)).mean
        cells = model.decode(z.expand(2, -1), one_hot(torch.tensor([7, 3]), 10)).mean
        guess = model.classify(x).probs.argmax(-1)
    np.testing.assert_allclose(images[2, [7, 3]], cells.numpy(), atol=1e-6)
    assert np.abs(images[2, 7] - images[2, 3]).max() > 1e-3  # the decoder sees the class
    # unknown labels: the classifier's guess
    np.testing.assert_allclose(exploration.analogies(model, x),
                               exploration.analogies(model, x, guess), atol=1e-6)
    mixed = torch.tensor([int(y[0]), -1, -1, int(y[3])])
    assert exploration.style_classes(model, x, mixed).tolist() == [
        int(y[0]), int(guess[1]), int(guess[2]), int(y[3])]
    fig, shown = figures.analogies(model, Split(x), 2, seed=3)  # a test set without labels
    assert shown.shape == (2, 11, 1, 8, 8) and "guessed" in fig.axes[0].get_ylabel()


def test_analogies_command(run: Path, trained: tuple[M2, Split], tmp_path: Path) -> None:
    assert main(["analogies", str(run), "-n", "3", "--seed", "1", "--save-array"]) == 0
    png = run / "analogies.png"
    assert png.stat().st_size > 5000 and derived_step(png) == model_state(run).step
    images = np.load(run / "analogies.npy")
    assert images.shape == (3, 11, 1, 8, 8)
    test = trained[1]
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))[:3]
    np.testing.assert_array_equal(images[:, 0], test.x[pick].numpy())  # column 0: the inputs
    np.testing.assert_allclose(images[:, 1:], exploration.analogies(trained[0], test.x[pick],
                                                                      test.y[pick]), atol=1e-6)
    out = tmp_path / "a.png"
    assert main(["analogies", str(run), "-n", "2", "--out", str(out)]) == 0 and out.is_file()


def test_analogies_need_a_model_of_the_class() -> None:
    plain = build_model(ModelConfig(latent_dim=2, hidden=[8], x_shape=[D])).eval()
    test = Split(torch.rand(5, D), torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(VaelabError, match="--family m2"):
        figures.analogies(plain, test, 2)
    with pytest.raises(VaelabError, match="not conditional"):
        exploration.analogies(plain, test.x)
    cvae = build_model(ModelConfig(latent_dim=2, hidden=[8], x_shape=[D], cond_dim=K)).eval()
    fig, images = figures.analogies(cvae, test, 2)  # a conditional VAE with labels: fine
    assert images.shape == (2, 1 + K, D)
    with pytest.raises(VaelabError, match="--conditional"):
        figures.analogies(cvae, Split(test.x), 2)
    with pytest.raises(VaelabError, match="some of these have no label"):
        exploration.analogies(cvae, test.x[:2], torch.tensor([0, -1]))
    with pytest.raises(VaelabError, match="attribute vectors"):
        exploration.analogies(cvae, test.x[:2], torch.ones(2, K))


def test_analogies_command_refuses_an_unconditional_run(
        digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad(["analogies", str(digits_run), "--out", str(tmp_path / "a.png")], capsys,
        r"analogies need a model of the class.*--family m2")


# ---------------------------------------------------------------- sampling, report
def test_sample_by_label(run: Path, trained: tuple[M2, Split], tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    model = trained[0]
    out = tmp_path / "s.png"
    assert main(["sample", str(run), "--label", "3", "-n", "6", "--out", str(out),
                 "--save-array"]) == 0
    z = torch.randn(6, model.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        threes = model.decode(z, one_hot(torch.full((6,), 3), 10)).mean
    np.testing.assert_allclose(np.load(out.with_suffix(".npy")), threes.numpy(), atol=1e-6)
    assert main(["sample", str(run), "--label", "all", "-n", "6", "--out", str(out),
                 "--save-array"]) == 0
    rows = np.load(out.with_suffix(".npy")).reshape(10, 6, 1, 8, 8)  # one row per class, same z
    np.testing.assert_allclose(rows[3], threes.numpy(), atol=1e-6)
    assert derived_step(out) == model_state(run).step
    bad(["sample", str(run), "--label", "10", "--out", str(out)], capsys, "classes 0 to 9")


def test_the_report_of_an_m2_run(run: Path) -> None:
    page = write_report(run, k=2).read_text()
    for title in ("Classification", "Analogies"):
        assert re.search(rf'<h2>{title}</h2><p>[^<]*</p>\s*<img alt="{title}" src="data:image/png',
                         page), title
    assert "test error (%)" in page and "M2 (semi-supervised, 50 training labels)" in page
    for name in ("confusion.png", "analogies.png"):
        assert derived_step(run / name) == model_state(run).step
