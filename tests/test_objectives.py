"""Objectives: the ELBO and its settings (beta, warm-up, free bits, capacity), IWAE, AE, KL-only."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

import vaelab
from vaelab.config import (
    OBJECTIVE_NAMES,
    Config,
    DataConfig,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
)
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.models.vae import Output
from vaelab.objectives import (
    OBJECTIVES,
    active_units,
    capacity_at,
    check_settings,
    compute_loss,
    elbo,
    iwae,
    kl_per_dim,
    kl_term,
    kl_weight,
    log_weights,
)
from vaelab.runfolder import read_metrics


def tiny_model(likelihood: str = "bernoulli", latent_dim: int = 3):
    torch.manual_seed(0)
    return build_model(ModelConfig(latent_dim=latent_dim, hidden=[16], likelihood=likelihood,
                                   x_shape=[1, 4, 4]))


def batch(n: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))


X_BITS = 4
LOG_PX = X_BITS * math.log(0.5)  # log p(x|z) of any binary x of 4 bits under Bernoulli(1/2)


def known_output(loc: torch.Tensor) -> tuple[Output, torch.Tensor]:
    """q(z|x) = N(loc, I) (B, D), p(z) = N(0, I) and a p(x|z) = Bernoulli(1/2)^4 that ignores z,
    so KL = |loc|^2 / 2 per example and E_q[log p(x|z)] = 4 log(1/2): every term known by hand."""
    qz = Independent(Normal(loc, torch.ones_like(loc)), 1)
    pz = Independent(Normal(torch.zeros_like(loc), torch.ones_like(loc)), 1)
    z = qz.rsample((1,))  # (1, B, D)
    px = Independent(Bernoulli(logits=torch.zeros(1, loc.shape[0], X_BITS)), 1)
    return Output(qz=qz, pz=pz, px=px, z=z), torch.ones(loc.shape[0], X_BITS)


def test_the_table_has_exactly_the_names_config_accepts():
    assert tuple(OBJECTIVES) == OBJECTIVE_NAMES


@pytest.mark.parametrize("name", OBJECTIVE_NAMES)
def test_each_objectives_properties_describe_what_it_does(name):
    objective = OBJECTIVES[name]
    x = batch()
    if objective.semi_supervised:  # M2: 3 classes, half the labels unknown
        torch.manual_seed(0)
        model = build_model(ModelConfig(family="m2", cond_dim=3, latent_dim=3, hidden=[16],
                                        x_shape=[1, 4, 4]))
        y = torch.arange(len(x)) % 3
        y[::2] = -1
        out = model(x, y, num_samples=2, generator=torch.Generator().manual_seed(8))
    else:
        model = tiny_model()
        out = model(x, num_samples=2, deterministic=objective.deterministic,
                    generator=torch.Generator().manual_seed(8))
    loss = compute_loss(ObjectiveConfig(name=name, num_samples=2), out, x)
    loss.loss.backward()
    decoder_grad = sum(float(p.grad.abs().sum()) for p in model.decoder.parameters()
                       if p.grad is not None)
    assert (decoder_grad > 0) == objective.trains_decoder
    assert (loss.bound is None) == (objective.bound is None)
    assert set(objective.terms(loss)) == set(objective.logged)
    # config accepts the KL-shaping settings exactly for the objectives that use them
    for shaping in ({"free_bits": 0.5}, {"beta": 2.0}, {"capacity": 5.0}, {"warmup": "linear"}):
        settings = Config.from_dict({"objective": {"name": name, **shaping}}).objective
        if objective.shapes_kl:
            check_settings(settings)
        else:
            with pytest.raises(VaelabError, match="shape the ELBO"):
                check_settings(settings)


@pytest.mark.parametrize(("name", "logged"), [
    ("elbo", {"elbo", "reconstruction", "kl"}),
    ("iwae", {"iwae_bound", "reconstruction", "kl"}),  # the IWAE bound is not an ELBO
    ("ae", {"reconstruction"}),  # a deterministic z: no bound to log
])
def test_train_records_carry_the_objectives_own_bound_under_its_name(tmp_path, name, logged):
    config = Config(data=DataConfig(name="digits"), model=ModelConfig(latent_dim=2, hidden=[16]),
                    objective=ObjectiveConfig(name=name, num_samples=3 if name == "iwae" else 1),
                    train=TrainConfig(epochs=1, batch_size=256, log_every=2))
    vaelab.train(config, tmp_path / "r", device="cpu", progress=False, figures=False)
    records = [r for r in read_metrics(tmp_path / "r") if r["split"] == "train"]
    assert records
    for r in records:
        assert set(r) - {"split", "step", "epoch", "lr", "kl_weight"} == logged


def test_iwae_with_one_sample_equals_the_elbo_on_the_same_samples():
    model, x = tiny_model(), batch()
    out = model(x, num_samples=1, generator=torch.Generator().manual_seed(2))
    # the ELBO on the sample z: log p(x|z) - (log q(z|x) - log p(z)), the KL estimated on z
    mc_kl = out.qz.log_prob(out.z[0]) - out.pz.log_prob(out.z[0])
    torch.testing.assert_close(iwae(out, x).bound, elbo(out, x).reconstruction - mc_kl)
    # over many samples, the k=1 bound averages to the analytic-KL ELBO
    wide = model(x, num_samples=20_000, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(log_weights(wide, x).mean(0), elbo(wide, x).elbo,
                               atol=0.05, rtol=0.0)


def test_iwae_gradient_weighs_each_sample_by_its_normalised_importance_weight():
    """Burda et al. (2016), section 3: the gradient of the k-sample bound is
    sum_i w~_i grad log w_i, w~ the normalised weights; k = 1 gives every sample the same."""
    model, x = tiny_model(), batch()
    eps = torch.randn(5, len(x), 3, generator=torch.Generator().manual_seed(9))  # (S, B, D)

    def gradient(loss: torch.Tensor) -> torch.Tensor:
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    k5 = gradient(iwae(model(x, num_samples=5, eps=eps), x).loss)
    k1 = gradient(torch.stack([iwae(model(x, num_samples=1, eps=eps[s:s + 1]), x).loss
                               for s in range(5)]).mean())  # the same 5 samples, k = 1 each
    logw = log_weights(model(x, num_samples=5, eps=eps), x)  # (S, B)
    weighted = gradient(-(torch.softmax(logw.detach(), 0) * logw).sum(0).mean())
    torch.testing.assert_close(k5, weighted)
    assert (k5 - k1).norm() > 0.1 * k1.norm()


def test_iwae_bound_is_non_decreasing_in_k_on_average():
    model, x = tiny_model(), batch(64)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        bounds = []
        for k in (1, 2, 5, 20, 100):
            runs = [iwae(model(x, num_samples=k, generator=gen), x).bound.mean() for _ in range(20)]
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


def test_warmup_weights_the_kl_in_the_loss_as_the_schedule_says():
    out, x = known_output(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))  # KL 2 and 0.5: mean 1.25
    config = ObjectiveConfig(beta=2.0, warmup="linear", warmup_epochs=4)
    for epoch, weight in [(0.0, 0.0), (1.0, 0.5), (3.0, 1.5), (6.0, 2.0), (None, 2.0)]:
        loss = compute_loss(config, out, x, epoch=epoch)
        assert loss.loss.item() == pytest.approx(-LOG_PX + weight * 1.25)
        assert loss.metrics["kl_weight"] == weight


def test_free_bits_cut_the_kl_gradient_of_dimensions_below_the_floor_in_the_batch_mean():
    # KL_j = loc_j^2 / 2 per example; batch means per dimension: 2.0, 0.36 and 0.505 nats.
    # Dimension 1 is below the floor 0.5 on average although example 0 alone is above it.
    loc = torch.tensor([[2.0, 1.2, 0.9], [-2.0, 0.0, 1.1]], requires_grad=True)
    out, x = known_output(loc)
    loss = compute_loss(ObjectiveConfig(free_bits=0.5), out, x)
    assert loss.loss.item() == pytest.approx(-LOG_PX + 2.0 + 0.5 + 0.505)
    loss.loss.backward()
    # above the floor: d mean_B KL_j / d loc_bj = loc_bj / B; below it: no gradient at all
    expected = loc.detach() / 2
    expected[:, 1] = 0.0
    torch.testing.assert_close(loc.grad, expected)


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


def test_capacity_weighs_the_distance_to_a_rising_target_by_gamma():
    config = ObjectiveConfig(capacity=4.0, capacity_epochs=8, gamma=10.0)
    assert capacity_at(config, 0.0) == 0.0
    assert capacity_at(config, 2.0) == pytest.approx(1.0)
    assert capacity_at(config, 20.0) == capacity_at(config, None) == 4.0
    assert capacity_at(ObjectiveConfig(), 3.0) is None
    for epoch, target in [(2.0, 1.0), (None, 4.0)]:  # C below, then above the KL
        loc = torch.tensor([[2.0, 2.0], [0.0, 0.0]], requires_grad=True)  # KL 4 and 0: mean 2
        out, x = known_output(loc)
        loss = compute_loss(config, out, x, epoch=epoch)
        assert loss.loss.item() == pytest.approx(-LOG_PX + 10.0 * abs(2.0 - target))
        assert loss.metrics["capacity"] == target and loss.metrics["kl_weight"] == 10.0
        loss.loss.backward()
        # gamma * d|mean KL - C| / d loc = gamma * sign(KL - C) * loc / B: the gradient pulls
        # the KL down while it exceeds C and up while it falls short
        sign = 1.0 if target < 2.0 else -1.0
        torch.testing.assert_close(loc.grad, sign * 10.0 * loc.detach() / 2)


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
        check_settings(Config.from_dict({"objective": objective}).objective)


def test_beta_below_one_is_a_valid_setting():
    assert Config.from_dict({"objective": {"beta": 0.1}}).objective.beta == 0.1
    assert math.isclose(kl_weight(ObjectiveConfig(beta=0.1)), 0.1)


def test_iwae_requires_matching_output():
    model, x = tiny_model(), batch()
    out = model(x, num_samples=5)
    assert isinstance(out, Output) and out.z.shape == (5, len(x), 3)
    assert iwae(out, x).bound.shape == (len(x),)


def test_the_gamma_flag_sets_the_weight_of_the_capacity_term():
    from vaelab.cli import build_parser
    from vaelab.cli.train import build_config

    args = build_parser().parse_args(["train", "--capacity", "5", "--gamma", "30"])
    config, _ = build_config(args)
    assert (config.objective.capacity, config.objective.gamma) == (5.0, 30.0)
    assert kl_weight(config.objective) == 30.0
    with pytest.raises(VaelabError, match="gamma"):  # beta is not the capacity weight
        build_config(build_parser().parse_args(["train", "--capacity", "5", "--beta", "4"]))
