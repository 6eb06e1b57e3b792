"""Objectives: the ELBO and its settings (beta, warm-up, free bits, capacity), IWAE, AE, KL-only."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vaelab.config import Config, ModelConfig, ObjectiveConfig
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.models.vae import Output
from vaelab.objectives import (
    active_units,
    capacity_at,
    compute_loss,
    elbo,
    iwae,
    kl_per_dim,
    kl_term,
    kl_weight,
    log_weights,
)


def tiny_model(likelihood: str = "bernoulli", latent_dim: int = 3):
    torch.manual_seed(0)
    return build_model(ModelConfig(latent_dim=latent_dim, hidden=[16], likelihood=likelihood,
                                   x_shape=[1, 4, 4]))


def batch(n: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))


def test_iwae_with_one_sample_equals_the_elbo_on_the_same_samples():
    model, x = tiny_model(), batch()
    out = model(x, num_samples=1, generator=torch.Generator().manual_seed(2))
    # the ELBO on the sample z: log p(x|z) - (log q(z|x) - log p(z)), the KL estimated on z
    mc_kl = out.qz.log_prob(out.z[0]) - out.pz.log_prob(out.z[0])
    torch.testing.assert_close(iwae(out, x).elbo, elbo(out, x).reconstruction - mc_kl)
    # over many samples, the k=1 bound averages to the analytic-KL ELBO
    wide = model(x, num_samples=20_000, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(log_weights(wide, x).mean(0), elbo(wide, x).elbo,
                               atol=0.05, rtol=0.0)


def test_iwae_bound_is_non_decreasing_in_k_on_average():
    model, x = tiny_model(), batch(64)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        bounds = []
        for k in (1, 2, 5, 20, 100):
            runs = [iwae(model(x, num_samples=k, generator=gen), x).elbo.mean() for _ in range(20)]
            bounds.append(torch.stack(runs).mean().item())
    assert all(b2 >= b1 - 1e-3 for b1, b2 in zip(bounds, bounds[1:], strict=False)), bounds
    assert bounds[-1] > bounds[0]


def test_analytic_kl_matches_monte_carlo_and_sums_over_dimensions():
    loc, scale = torch.randn(5, 3), torch.rand(5, 3) + 0.3
    qz = Independent(Normal(loc, scale), 1)
    pz = Independent(Normal(torch.zeros(5, 3), torch.ones(5, 3)), 1)
    z = qz.sample((200_000,))
    mc = (qz.log_prob(z) - pz.log_prob(z)).mean(0)
    torch.testing.assert_close(kl_term(qz, pz, z), mc, atol=0.02, rtol=0.02)
    torch.testing.assert_close(kl_per_dim(qz, pz).sum(-1), kl_term(qz, pz, z))


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
def test_beta_weights_the_kl_in_the_loss_but_not_the_bound(beta):
    model, x = tiny_model(), batch()
    out = model(x, generator=torch.Generator().manual_seed(4))
    loss = compute_loss(ObjectiveConfig(beta=beta), out, x)
    torch.testing.assert_close(loss.loss, -(loss.reconstruction - beta * loss.kl).mean())
    torch.testing.assert_close(loss.elbo, elbo(out, x).elbo)


def test_linear_and_cyclical_warmup_schedules():
    linear = ObjectiveConfig(beta=2.0, warmup="linear", warmup_epochs=4)
    assert [kl_weight(linear, e) for e in (0, 1, 2, 4, 9)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    assert kl_weight(linear, None) == 2.0  # outside training: the full weight
    # Fu et al. (2019): each cycle rises for a ratio R of it, then holds at beta, then restarts
    cyc = ObjectiveConfig(beta=1.0, warmup="cyclical", warmup_epochs=2, cycle_ratio=0.5)
    got = [kl_weight(cyc, e) for e in (0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.5)]
    assert got == pytest.approx([0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0])
    assert kl_weight(ObjectiveConfig(beta=3.0), 0.0) == 3.0  # no warm-up


def test_warmup_reaches_the_loss_through_the_epoch():
    model, x = tiny_model(), batch()
    out = model(x, generator=torch.Generator().manual_seed(5))
    config = ObjectiveConfig(warmup="linear", warmup_epochs=2)
    at_start = compute_loss(config, out, x, epoch=0.0)
    torch.testing.assert_close(at_start.loss, -at_start.reconstruction.mean())
    assert at_start.metrics["kl_weight"] == 0.0
    assert compute_loss(config, out, x, epoch=1.0).metrics["kl_weight"] == 0.5


def test_free_bits_floors_each_dimension_of_the_batch_mean_kl():
    model, x = tiny_model(latent_dim=4), batch()
    out = model(x, generator=torch.Generator().manual_seed(6))
    per_dim = kl_per_dim(out.qz, out.pz).mean(0)  # (D,)
    floor = float(per_dim.median().detach())
    loss = compute_loss(ObjectiveConfig(free_bits=floor), out, x)
    expected = -loss.reconstruction.mean() + per_dim.clamp(min=floor).sum()
    torch.testing.assert_close(loss.loss, expected)
    # dimensions below the floor get no gradient from the KL term
    model.zero_grad()
    compute_loss(ObjectiveConfig(free_bits=1e6), out, x).loss.backward()
    recon_only = [p.grad.clone() for p in model.encoder.parameters()]
    model.zero_grad()
    out = model(x, generator=torch.Generator().manual_seed(6))
    (-elbo(out, x).reconstruction.mean()).backward()
    for a, b in zip(recon_only, [p.grad for p in model.encoder.parameters()], strict=True):
        torch.testing.assert_close(a, b)


def test_capacity_penalises_the_distance_to_a_rising_target():
    config = ObjectiveConfig(beta=10.0, capacity=5.0, capacity_epochs=10)
    assert capacity_at(config, 0.0) == 0.0
    assert capacity_at(config, 4.0) == pytest.approx(2.0)
    assert capacity_at(config, 20.0) == capacity_at(config, None) == 5.0
    assert capacity_at(ObjectiveConfig(), 3.0) is None
    model, x = tiny_model(), batch()
    out = model(x, generator=torch.Generator().manual_seed(7))
    loss = compute_loss(config, out, x, epoch=4.0)
    expected = -loss.reconstruction.mean() + 10.0 * (loss.kl.mean() - 2.0).abs()
    torch.testing.assert_close(loss.loss, expected)
    assert loss.metrics["capacity"] == pytest.approx(2.0)


def test_plain_autoencoder_uses_the_posterior_mean_and_only_reconstruction():
    model, x = tiny_model(), batch()
    config = ObjectiveConfig(name="ae")
    out = model(x, num_samples=2, deterministic=True)
    torch.testing.assert_close(out.z[0], out.qz.mean)
    torch.testing.assert_close(out.z[1], out.qz.mean)
    loss = compute_loss(config, out, x)
    torch.testing.assert_close(loss.loss, -loss.reconstruction.mean())
    # the gradient ignores the posterior scale: it never enters the code
    loss.loss.backward()
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_kl_only_loss_is_the_kl_and_drives_it_to_zero():
    model, x = tiny_model(), batch()
    config = ObjectiveConfig(name="kl-only")
    out = model(x)
    loss = compute_loss(config, out, x)
    torch.testing.assert_close(loss.loss, loss.kl.mean())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        compute_loss(config, model(x), x).loss.backward()
        opt.step()
    assert compute_loss(config, model(x), x).kl.mean() < 0.01


def test_active_units_counts_dimensions_whose_mean_varies_over_x():
    loc = torch.stack([torch.randn(500), torch.full((500,), 2.0), 0.05 * torch.randn(500)], 1)
    assert active_units(loc).tolist() == [True, False, False]
    assert active_units(loc[:1]).tolist() == [False, False, False]


@pytest.mark.parametrize("objective", [
    {"warmup": "sometimes"}, {"warmup_epochs": 0.0}, {"cycle_ratio": 0.0}, {"free_bits": -1.0},
    {"capacity": -1.0}, {"beta": -0.5}, {"name": "iwae", "free_bits": 0.5},
    {"name": "ae", "beta": 4.0},
])
def test_invalid_objective_settings_are_rejected_by_name(objective):
    with pytest.raises(VaelabError, match="objective"):
        Config.from_dict({"objective": objective})


def test_beta_below_one_is_a_valid_setting():
    assert Config.from_dict({"objective": {"beta": 0.1}}).objective.beta == 0.1
    assert math.isclose(kl_weight(ObjectiveConfig(beta=0.1)), 0.1)


def test_iwae_requires_matching_output():
    model, x = tiny_model(), batch()
    out = model(x, num_samples=5)
    assert isinstance(out, Output) and out.z.shape == (5, len(x), 3)
    assert iwae(out, x).elbo.shape == (len(x),)
