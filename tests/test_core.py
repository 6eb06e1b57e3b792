"""The numbers that matter, against independent computations (issue 2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

import vaelab
from tests.conftest import tiny_config
from vaelab.config import Config, DataConfig, ModelConfig, TrainConfig
from vaelab.data import Data, Split
from vaelab.evaluation import evaluate, log_likelihood
from vaelab.models import build_model
from vaelab.objectives import elbo, kl_term
from vaelab.runfolder import CHECKPOINT, WEIGHTS, load, read_metrics
from vaelab.training import learning_rate


@pytest.mark.parametrize("dim", [1, 3, 16])
def test_analytic_kl_matches_monte_carlo(dim: int) -> None:
    g = torch.Generator().manual_seed(dim)
    loc, scale = torch.randn(4, dim, generator=g), torch.rand(4, dim, generator=g) + 0.3
    qz = Independent(Normal(loc, scale), 1)
    pz = Independent(Normal(torch.zeros_like(loc), torch.ones_like(loc)), 1)
    z = qz.sample((200_000,))
    mc = (qz.log_prob(z) - pz.log_prob(z)).mean(0)
    # Kingma & Welling, Appendix B, written out independently of torch's formula
    closed = 0.5 * (scale**2 + loc**2 - 1 - 2 * scale.log()).sum(-1)
    torch.testing.assert_close(kl_term(qz, pz, z), closed)
    torch.testing.assert_close(mc, closed, atol=0.05 * dim**0.5, rtol=0.02)


def _ppca(d: int = 5, latent: int = 2, sigma: float = 0.5, seed: int = 0):
    """A linear-Gaussian VAE (probabilistic PCA) whose log p(x) is exact, and data from it."""
    g = torch.Generator().manual_seed(seed)
    config = ModelConfig(latent_dim=latent, hidden=[], likelihood="gaussian", obs_scale=sigma,
                         x_shape=[d])
    model = build_model(config)
    W = torch.randn(d, latent, generator=g)
    b = torch.randn(d, generator=g)
    dec = model.decoder.net[0]
    dec.weight.data, dec.bias.data = W.clone(), b.clone()
    # encoder: the exact posterior mean, a diagonal (so approximate) and widened variance
    M = W.T @ W + sigma**2 * torch.eye(latent)
    A = torch.linalg.solve(M, W.T)  # (D, d): posterior mean = A (x - b)
    post_var = sigma**2 * torch.linalg.inv(M).diagonal()
    enc = model.encoder.net[0]
    enc.weight.data = torch.cat([A, torch.zeros(latent, d)])
    enc.bias.data = torch.cat([-A @ b, post_var.log() + 0.3])
    cov = W @ W.T + sigma**2 * torch.eye(d)
    exact = torch.distributions.MultivariateNormal(b, covariance_matrix=cov)
    x = exact.sample(torch.Size([200]))
    return model.eval(), x, exact


def test_importance_sampled_log_likelihood_matches_exact_ppca() -> None:
    torch.manual_seed(0)
    model, x, exact = _ppca()
    gen = torch.Generator().manual_seed(1)
    estimate = log_likelihood(model, x, k=2000, generator=gen, budget=4096)
    true = exact.log_prob(x)
    assert (estimate - true).abs().mean() < 0.1
    assert abs(estimate.mean() - true.mean()) < 0.1
    # the proposal is not the exact posterior, so a single sample is visibly off: k matters
    single = log_likelihood(model, x, k=1, generator=gen)
    assert (single - true).abs().mean() > 0.1


def test_elbo_never_exceeds_importance_sampled_estimate() -> None:
    torch.manual_seed(0)
    model, x, exact = _ppca(seed=3)
    gen = torch.Generator().manual_seed(2)
    bound = elbo(model(x, num_samples=50, generator=gen), x).elbo.mean()
    is_estimate = log_likelihood(model, x, k=500, generator=gen).mean()
    assert bound < is_estimate <= exact.log_prob(x).mean() + 0.05


def test_evaluate_reports_consistent_numbers(digits_run) -> None:
    model = load(digits_run)
    data = vaelab.data.load_data(vaelab.runfolder.read_config(digits_run).data)
    result = evaluate(model, data.test, k=50)
    # a Bernoulli on digits' grey levels: a cross-entropy, never called a likelihood
    assert result["quantity"]["kind"] == "cross_entropy"
    assert not {"log_likelihood", "nll", "bits_per_dim"} & set(result)
    assert result["elbo"] <= -result["cross_entropy"] + 0.5  # stochastic, on average
    assert math.isclose(result["elbo"], result["reconstruction"] - result["kl"], rel_tol=1e-5)
    assert math.isclose(sum(result["kl_per_dim"]), result["kl"], rel_tol=1e-4)
    # active units and bits/dim against known answers: tests/test_evaluation.py
    # the same seed gives the same numbers
    assert evaluate(model, data.test, k=50)["cross_entropy"] == result["cross_entropy"]


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_is_bitwise_identical(tmp_path, schedule) -> None:
    lr = {"lr_schedule": schedule, "lr_decay_epochs": 2.0}  # the cosine spans both epochs
    straight = vaelab.train(tiny_config(epochs=2, **lr), tmp_path / "a", device="cpu",
                            progress=False, figures=False)
    vaelab.train(tiny_config(epochs=1, **lr), tmp_path / "b", device="cpu", progress=False,
                 figures=False)
    resumed = vaelab.train(tiny_config(epochs=2, **lr), tmp_path / "b", resume=True,
                           device="cpu", progress=False, figures=False)
    for (name, p), (_, q) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(p, q), name
    assert (tmp_path / "b" / CHECKPOINT).is_file()


def test_save_load_round_trip_gives_identical_outputs(digits_run) -> None:
    model = load(digits_run)
    again = load(digits_run)
    x = torch.rand(7, 1, 8, 8)
    torch.testing.assert_close(model.encode(x).mean, again.encode(x).mean, rtol=0, atol=0)
    z = torch.randn(5, model.latent_dim)
    torch.testing.assert_close(model.decode(z).mean, again.decode(z).mean, rtol=0, atol=0)
    assert (digits_run / WEIGHTS).is_file()


def test_training_improves_the_validation_elbo(tmp_path) -> None:
    result = vaelab.train(tiny_config(epochs=8), tmp_path / "r", device="cpu", progress=False,
                          figures=False)
    elbos = [r["valid_elbo"] for r in result.history]
    assert elbos[-1] > elbos[0] + 1.0


def test_train_accepts_in_memory_data(tmp_path) -> None:
    x = (torch.rand(300, 1, 4, 4) > 0.5).float()
    data = Data(name="toy", train=Split(x[:250]), test=Split(x[250:]), value_range="binary")
    config = Config(data=DataConfig(name="toy", valid_fraction=0),
                    model=ModelConfig(latent_dim=2, hidden=[16]),
                    train=TrainConfig(epochs=1, batch_size=50))
    result = vaelab.train(config, tmp_path / "toy", data=data, device="cpu", progress=False,
                          figures=False)
    assert result.model.x_shape == [1, 4, 4]


def test_cosine_learning_rate_falls_from_lr_to_lr_final(tmp_path) -> None:
    t = TrainConfig(epochs=4, lr=1e-3, lr_schedule="cosine", lr_final=1e-5)
    steps = 4 * 10
    rates = [learning_rate(t, step, steps_per_epoch=10) for step in range(steps + 5)]
    assert rates[0] == pytest.approx(1e-3) and rates[steps - 1] == pytest.approx(1e-5)
    assert rates[steps // 2] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5), rel=0.05)  # midpoint
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert rates[-1] == pytest.approx(1e-5)  # held after the end (resumed with more epochs)
    half = TrainConfig(epochs=4, lr=1e-3, lr_schedule="cosine", lr_decay_epochs=2)
    assert learning_rate(half, 20, 10) == 0.0 and learning_rate(half, 10, 10) > 0.4e-3
    assert learning_rate(TrainConfig(lr=3e-4), 1234, 10) == 3e-4  # constant

    result = vaelab.train(tiny_config(epochs=2, lr_schedule="cosine", lr_final=1e-4),
                          tmp_path / "r", device="cpu", progress=False, figures=False)
    logged = [r for r in read_metrics(result.run) if r["split"] == "train"]
    steps_per_epoch = next(r["step"] for r in result.history if r["epoch"] == 1)
    for r in logged:  # the rate of the step just taken (steps count from 0)
        expected = learning_rate(result.config.train, r["step"] - 1, steps_per_epoch)
        assert r["lr"] == pytest.approx(expected)
    assert logged[0]["lr"] > 0.9e-3 and logged[-1]["lr"] < 0.2e-3
