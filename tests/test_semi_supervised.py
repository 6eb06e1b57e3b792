"""M2 (Kingma et al. 2014) in the one training loop: a few balanced labels, the objective with
y summed out exactly, and training that never reads the hidden labels (issue 11)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaelab
from vaelab import training
from vaelab.cli import main
from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.data import Split, load_data
from vaelab.data.splits import keep_labels
from vaelab.errors import VaelabError
from vaelab.models import build_model, one_hot
from vaelab.objectives import BatchMean, m2, reconstruction_and_kl


def m2_config(labels: int = 30, epochs: int = 1, **train: object) -> Config:
    return Config(data=DataConfig(name="digits", labels=labels),
                  model=ModelConfig(family="m2", latent_dim=4, hidden=[32]),
                  objective=ObjectiveConfig(name="m2"),
                  train=TrainConfig(**({"epochs": epochs, "batch_size": 64} | train)))


def test_kept_labels_are_balanced_and_the_rest_hidden() -> None:
    y = torch.arange(100) % 4
    split, kept = keep_labels(Split(torch.zeros(100, 3), y), 10, 4, seed=0)
    assert len(kept) == 10 and (split.y >= 0).sum() == 10
    assert torch.equal(split.y[kept], y[kept]) and (split.y[split.y != -1] == y[kept]).all()
    assert torch.bincount(y[kept]).tolist() == [3, 3, 2, 2]  # 10 over 4: the first two get 3
    again, kept2 = keep_labels(Split(torch.zeros(100, 3), y), 10, 4, seed=0)
    assert torch.equal(kept, kept2)  # drawn with the seed
    assert not torch.equal(kept, keep_labels(Split(torch.zeros(100, 3), y), 10, 4, seed=1)[1])


@pytest.mark.parametrize(("n", "message"), [(3, "at least one label per class"),
                                            (101, "at most the 100")])
def test_impossible_label_counts_are_refused(n: int, message: str) -> None:
    with pytest.raises(VaelabError, match=message):
        keep_labels(Split(torch.zeros(100, 3), torch.arange(100) % 4), n, 4, seed=0)


def test_the_objective_sums_y_out_exactly() -> None:
    """U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) and L(x, y), recomputed class by class through
    the model's ordinary conditional path with the same noise (eqs. 6 and 7)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(family="m2", cond_dim=3, latent_dim=2, hidden=[8],
                                    x_shape=[6]))
    x = torch.rand(5, 6).bernoulli()
    y = torch.tensor([-1, 2, -1, 0, -1])
    eps = torch.randn(1, 5, 2)
    loss = m2(ObjectiveConfig(name="m2", alpha=0.0), model(x, y, eps=eps), x, None, BatchMean())
    joint = []
    for k in range(3):
        cond = one_hot(torch.full((5,), k), 3)
        recon, kl = reconstruction_and_kl(super(type(model), model).forward(x, cond, eps=eps), x)
        joint.append(recon - kl - math.log(3))
    joint_t = torch.stack(joint)  # (K, B)
    qy = model.classify(x)
    unlabelled = (qy.probs.T * joint_t).sum(0) + qy.entropy()
    expected = torch.where(y >= 0, joint_t.gather(0, y.clamp(min=0)[None])[0], unlabelled)
    torch.testing.assert_close(loss.elbo, expected)
    assert torch.allclose(loss.reconstruction - loss.kl, loss.elbo)
    # alpha adds -log q(y|x) on the labelled examples only
    with_alpha = m2(ObjectiveConfig(name="m2", alpha=2.0), model(x, y, eps=eps), x, None,
                    BatchMean())
    ce = -qy.log_prob(y.clamp(min=0))[y >= 0].sum() / 5
    torch.testing.assert_close(with_alpha.loss - loss.loss, 2.0 * ce)


def test_training_keeps_n_labels_saves_them_and_hides_validation_labels(tmp_path: Path) -> None:
    config = m2_config(labels=30)
    prepared, data = training.prepare(config)
    assert config.model.cond_dim == 0 and config.objective.alpha is None  # caller's config kept
    assert prepared.model.cond_dim == 10
    assert (data.train.y >= 0).sum() == 30 and data.valid is not None and data.valid.y is None
    assert prepared.objective.alpha == pytest.approx(len(data.train) / 30)
    result = vaelab.train(config, tmp_path / "r", device="cpu", progress=False, figures=False)
    saved = json.loads((tmp_path / "r" / "labels.json").read_text())
    assert saved["labels"] == 30 and saved["train_indices"] == (
        (data.train.y >= 0).nonzero().flatten().tolist())
    assert result.history[-1]["valid_elbo"] < 0


def test_training_never_reads_the_hidden_labels(tmp_path: Path, monkeypatch) -> None:
    """Two runs whose data differ only in the labels that are not kept train the same weights:
    the kept examples are fixed (the act of labelling), everything after that sees -1."""
    full = load_data(DataConfig(name="digits"))
    _, kept = keep_labels(full.train, 30, 10, seed=0)
    scrambled = load_data(DataConfig(name="digits"))
    hidden = torch.ones(len(full.train), dtype=torch.bool)
    hidden[kept] = False
    y = scrambled.train.y.clone()
    y[hidden] = y[hidden][torch.randperm(int(hidden.sum()), generator=torch.Generator().manual_seed(3))]
    scrambled.train = Split(scrambled.train.x, y)
    assert (y != full.train.y).any()
    monkeypatch.setattr(training, "keep_labels",
                        lambda split, n, k, seed: (Split(split.x, torch.where(hidden, -1, split.y)),
                                                   kept))
    for name, data in (("a", full), ("b", scrambled)):
        vaelab.train(m2_config(labels=30, epochs=2), tmp_path / name, data=data, device="cpu",
                     progress=False, figures=False)
    wa, wb = (load_file(str(tmp_path / n / "model.safetensors")) for n in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_m2_learns_to_classify_from_a_few_labels(tmp_path: Path) -> None:
    """50 labels of digits: the classifier q(y|x) does far better than chance (90 % error)."""
    result = vaelab.train(m2_config(labels=50, epochs=15), tmp_path / "r", device="cpu",
                          progress=False, figures=False)
    test = result.data.test
    with torch.no_grad():
        error = (result.model.classify(test.x).probs.argmax(-1) != test.y).float().mean()
    assert error < 0.4, float(error)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_m2_trains_on_a_labelled_image_folder(tmp_path: Path, arch: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Any dataset with classes works: here a folder of colour images, a class per sub-folder."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs", "owls"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    assert main(["train", "--data", str(tmp_path / "images"), "--family", "m2", "--labels", "6",
                 "--arch", arch, "--channels", "4", "--hidden", "16", "--epochs", "2",
                 "--runs-dir", str(tmp_path / "runs"), "--name", "m2", "--quiet"]) == 0
    run = tmp_path / "runs" / "m2"
    kept = json.loads((run / "labels.json").read_text())
    assert kept["labels"] == 6 and len(kept["train_indices"]) == 6
    assert vaelab.load(run).cond_dim == 3
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", "-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["test_error"] <= 1 and result["test_error_sem"] >= 0  # 3 test images


@pytest.mark.parametrize(("argv", "message"), [
    (["--data", "digits", "--labels", "20"], "only semi-supervised training keeps a few labels"),
    (["--data", "digits", "--family", "m2", "--labels", "5"], "at least one label per class"),
    (["--data", "digits", "--family", "m2", "--labels", "99999"], "at most the"),
    (["--data", "digits", "--family", "m2", "--objective", "elbo"], "trained with objective.name m2"),
])
def test_semi_supervised_mistakes_are_one_line(argv: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *argv, "--epochs", "1", "--quiet", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_dataset_without_labels_is_refused(tmp_path: Path, capsys) -> None:
    x = torch.rand(40, 9).bernoulli().numpy()
    import numpy as np

    np.save(tmp_path / "x.npy", x)
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--family", "m2", "--epochs", "1",
                 "--quiet", "--runs-dir", str(tmp_path)]) == 2
    assert "has no class labels" in capsys.readouterr().err
