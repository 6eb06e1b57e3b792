"""`vaelab evaluate`'s numbers against known answers, and named for what they are."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig
from vaelab.data import Split
from vaelab.errors import VaelabError
from vaelab.evaluation import ExampleNoise, elbo_metrics, evaluate, format_rows, format_table
from vaelab.models import VAE, build_model

D = 6  # pixels of the synthetic data
COMMON = {"n", "quantity", "latent_dim", "reconstruction", "active_units",
          "posterior_mean_variance", "seconds"}
DENSITY = {"elbo", "kl", "kl_per_dim", "k"}  # what a density model adds with an IS estimate


def tiny(likelihood: str = "bernoulli", latent: int = 2, hidden: list[int] | None = None,
         cond_dim: int = 0, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    config = ModelConfig(latent_dim=latent, hidden=[8] if hidden is None else hidden,
                         likelihood=likelihood, x_shape=[D], cond_dim=cond_dim)
    return build_model(config).eval()


def constant_decoder(model: VAE, value: float) -> VAE:
    """p(x|z) with every parameter `value` whatever z, and q(z|x) = p(z) = N(0, I): then
    w = p(x|z) p(z) / q(z|x) = p(x) for every z, and the IS estimate is exact."""
    for net, bias in ((model.encoder.net[-1], 0.0), (model.decoder.net[-1], value)):
        torch.nn.init.zeros_(net.weight)
        torch.nn.init.constant_(net.bias, bias)
    return model


def levels_data(n: int, levels: int, seed: int = 0) -> torch.Tensor:
    k = torch.randint(0, levels, (n, D), generator=torch.Generator().manual_seed(seed))
    return k / (levels - 1)


def test_a_uniform_density_on_8bit_data_gives_exactly_8_bits_per_dim() -> None:
    # a continuous Bernoulli with logits 0 has density 1 on [0, 1]^D (Loaiza-Ganem &
    # Cunningham 2019): every dequantised point has log-density 0, each of the 256^D cells
    # probability 256^-D, so 8 bits per dimension
    model = constant_decoder(tiny("continuous-bernoulli"), 0.0)
    result = evaluate(model, Split(levels_data(40, 256)), k=10, value_range="unit", levels=256)
    assert result["log_density_dequantised"] == pytest.approx(0.0, abs=1e-5)
    assert result["bits_per_dim_dequantised"] == pytest.approx(8.0, abs=1e-6)


def test_a_fair_coin_per_pixel_gives_exactly_1_bit_per_dim() -> None:
    model = constant_decoder(tiny("bernoulli"), 0.0)
    result = evaluate(model, Split(levels_data(40, 2)), k=10)
    assert result["log_likelihood"] == pytest.approx(-D * math.log(2), abs=1e-5)
    assert result["nll"] == pytest.approx(D * math.log(2), abs=1e-5)
    assert result["bits_per_dim"] == pytest.approx(1.0, abs=1e-6)
    assert result["log_likelihood_sem"] == pytest.approx(0.0, abs=1e-6)


def test_dequantisation_maps_k_to_k_plus_uniform_over_levels() -> None:
    # continuous Bernoulli(lam) with logit 3: log p(v) = log C + v log lam + (1-v) log(1-lam)
    # per pixel, C = 2 artanh(1 - 2 lam) / (1 - 2 lam) (Loaiza-Ganem & Cunningham 2019, eq. 7).
    # Every pixel is x = 1 = k/(L-1), k = 3 of L = 4 levels, dequantised to v = (3 + u)/4:
    # E v = 7/8, so E log p(v) is log p(7/8) (log p is linear in v). Undequantised, v = 1.
    logit, n, levels = 3.0, 400, 4
    model = constant_decoder(tiny("continuous-bernoulli"), logit)
    result = evaluate(model, Split(torch.ones(n, D)), k=5, value_range="unit", levels=levels)
    lam = 1 / (1 + math.exp(-logit))
    log_c = math.log(2 * math.atanh(1 - 2 * lam) / (1 - 2 * lam))
    expected = D * (log_c + 7 / 8 * math.log(lam) + 1 / 8 * math.log(1 - lam))
    # per example, log p - E log p = logit * sum_d (u_d - 1/2) / L: sd = logit sqrt(D/12) / L
    sd = logit * math.sqrt(D / 12) / levels
    assert result["log_density_dequantised"] == pytest.approx(expected, abs=4 * sd / math.sqrt(n))
    assert result["log_density_dequantised_sem"] == pytest.approx(sd / math.sqrt(n), rel=0.2)
    bits = (-expected + D * math.log(levels)) / (D * math.log(2))
    assert result["bits_per_dim_dequantised"] == pytest.approx(bits, abs=4 * sd / math.sqrt(n) / D)


def test_log_density_and_its_sem_match_an_exact_linear_gaussian_model() -> None:
    from tests.test_core import _ppca

    torch.manual_seed(0)
    model, x, exact = _ppca()
    result = evaluate(model, Split(x), k=2000, value_range="real")
    true = exact.log_prob(x)  # (N,)
    assert result["log_density"] == pytest.approx(true.mean().item(), abs=0.05)
    assert result["log_density_sem"] == pytest.approx(true.std().item() / math.sqrt(len(x)),
                                                      rel=0.05)
    assert "bits_per_dim" not in result and "nll" not in result


def test_importance_sampling_matches_quadrature_for_a_bernoulli_model() -> None:
    # log p(x) = log integral p(x|z) N(z; 0, I) dz by Gauss-Hermite quadrature on a 2-d latent
    model = tiny("bernoulli", latent=2, hidden=[16], seed=3)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3.0)  # a decoder that varies with z, so that the posterior is not the prior
    x = torch.bernoulli(torch.full((8, D), 0.4), generator=torch.Generator().manual_seed(5))
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # weight exp(-z^2 / 2)
    z = torch.tensor(np.stack(np.meshgrid(nodes, nodes), -1).reshape(-1, 2), dtype=torch.float32)
    log_w = torch.tensor(np.log(np.outer(weights, weights)).reshape(-1) - math.log(2 * math.pi))
    with torch.no_grad():
        log_px = model.decode(z[:, None].expand(-1, len(x), -1)).log_prob(x)  # (Q, B)
    exact = torch.logsumexp(log_px.double() + log_w[:, None], 0)  # (B,)
    result = evaluate(model, Split(x), k=4000)
    assert result["log_likelihood"] == pytest.approx(exact.mean().item(), abs=0.02)
    assert result["elbo"] < exact.mean().item() - 0.05  # the posterior is visibly not the prior


def test_trained_bounds_are_ordered_elbo_iwae_importance_sampled(tmp_path, capsys) -> None:
    # ELBO <= IWAE-5 bound <= IS estimate with k = 500 (Burda et al. 2016, theorem 1)
    config = Config(data=DataConfig(name="digits", binarize="dynamic"),
                    model=ModelConfig(latent_dim=4, hidden=[32]),
                    objective=ObjectiveConfig(name="iwae", num_samples=5),
                    train=TrainConfig(epochs=2, batch_size=32))
    vaelab.train(config, tmp_path / "iw", device="cpu", progress=False, figures=False)
    assert main(["evaluate", str(tmp_path / "iw"), "--samples", "500", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["quantity"]["value_range"] == "binary"  # the test set is binarized once
    assert result["iwae_k"] == 5
    assert result["elbo"] < result["iwae_bound"] < result["log_likelihood"]
    assert result["log_likelihood"] < result["iwae_bound"] + 5  # and not absurdly far apart


CASES = {  # name: (likelihood, data, evaluate keywords, keys beyond COMMON, table labels)
    "bernoulli-on-binary": (
        "bernoulli", levels_data(30, 2), {},
        DENSITY | {"log_likelihood", "log_likelihood_sem", "nll", "bits_per_dim"},
        ["ELBO on log p(x) (nats)", "log p(x), IS k=20 (nats)", "NLL, -log p(x) (nats)",
         "bits/dim"]),
    "bernoulli-on-grey": (
        "bernoulli", levels_data(30, 17), {"levels": 17},
        DENSITY | {"cross_entropy", "cross_entropy_sem"},
        ["ELBO on -cross-entropy (nats)", "  E_q -cross-entropy(x, p(x|z))",
         "cross-entropy, IS k=20 (nats)", "note"]),
    "gaussian-on-8-bit": (
        "gaussian", levels_data(30, 256), {"levels": 256},
        DENSITY | {"log_density_dequantised", "log_density_dequantised_sem",
                   "bits_per_dim_dequantised"},
        ["log-density p(x) of x dequantised to 256 levels, IS k=20 (nats)",
         "bits/dim, dequantised (256 levels)"]),
    "gaussian-on-real": (
        "gaussian", torch.randn(30, D, generator=torch.Generator().manual_seed(0)), {},
        DENSITY | {"log_density", "log_density_sem"},
        ["ELBO on log-density p(x) (nats)", "log-density p(x), IS k=20 (nats)", "note"]),
    "conditional": (
        "bernoulli", levels_data(30, 2), {"cond_dim": 3},
        DENSITY | {"log_likelihood_given_y", "log_likelihood_given_y_sem", "nll_given_y",
                   "bits_per_dim_given_y"},
        ["ELBO on log p(x|y) (nats)", "  E_q log p(x|z,y)", "  KL(q(z|x,y) || p(z))",
         "log p(x|y), IS k=20 (nats)", "NLL, -log p(x|y) (nats)", "bits/dim, given y"]),
    "autoencoder": (
        "bernoulli", levels_data(30, 2), {"objective": "ae"}, set(),
        ["log p(x|z) at z = E_q[z] (nats)", "note"]),
    "iwae": (
        "bernoulli", levels_data(30, 2), {"objective": "iwae", "iwae_k": 4},
        DENSITY | {"iwae_bound", "iwae_k", "log_likelihood", "log_likelihood_sem", "nll",
                   "bits_per_dim"},
        ["ELBO on log p(x) (nats)", "IWAE bound on log p(x), k=4 (nats)"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_number_is_named_for_what_it_is(case: str) -> None:
    likelihood, x, kwargs, keys, labels = CASES[case]
    cond_dim = kwargs.get("cond_dim", 0)
    split = Split(x, torch.arange(len(x)) % 3 if cond_dim else None)
    result = evaluate(tiny(likelihood, cond_dim=cond_dim), split, k=20, **kwargs)
    assert set(result) == COMMON | keys
    rows = dict(format_rows(result))
    assert set(labels) <= set(rows), sorted(rows)
    for key in keys:
        if key.endswith("_sem"):  # the +- beside an estimate is its standard error of the mean
            estimate = next(label for label in rows if ", IS k=" in label)
            assert rows[estimate].endswith(f" +- {result[key]:.3f} s.e.m.")
    assert json.loads(json.dumps(result)) == result  # JSON-ready
    assert format_table(result).count("\n") == len(rows) - 1


def test_a_cross_entropy_is_positive_and_bounded_by_the_elbo() -> None:
    result = evaluate(tiny("bernoulli"), Split(levels_data(50, 17)), k=500, levels=17)
    assert "--binarize dynamic" in result["quantity"]["note"]
    assert 0 < result["cross_entropy"] <= -result["elbo"]


SAME_NUMBERS = {  # name: (likelihood, data, evaluate keywords)
    "bernoulli": ("bernoulli", levels_data(23, 2), {"iwae_k": 3}),
    "dequantised": ("gaussian-learned", levels_data(23, 17), {"levels": 17}),
    "conditional": ("bernoulli", levels_data(23, 2), {"cond_dim": 2}),
}


@pytest.mark.parametrize("case", list(SAME_NUMBERS))
def test_numbers_depend_on_the_seed_not_on_batch_size_or_budget(case: str) -> None:
    likelihood, x, kwargs = SAME_NUMBERS[case]
    cond_dim = kwargs.get("cond_dim", 0)
    model = tiny(likelihood, cond_dim=cond_dim)
    split = Split(x, torch.arange(len(x)) % 2 if cond_dim else None)
    results = [evaluate(model, split, k=300, batch_size=b, budget=budget, **kwargs)
               for b, budget in ((0, None), (3, 64), (7, 1000), (23, 1 << 15))]
    numbers = [[(key, v) for key, value in r.items() if key != "seconds"
                for v in (value if isinstance(value, list) else [value])
                if isinstance(v, float)] for r in results]
    assert len(numbers[0]) >= 10
    for other in numbers[1:]:
        assert [key for key, _ in other] == [key for key, _ in numbers[0]]
        assert [v for _, v in other] == pytest.approx([v for _, v in numbers[0]], rel=1e-5,
                                                      abs=1e-6)
    reseeded = evaluate(model, split, k=300, seed=1, **kwargs)
    assert reseeded["elbo"] != results[0]["elbo"]


def test_example_noise_rows_do_not_depend_on_how_they_are_asked_for() -> None:
    noise = ExampleNoise(seed=7, stream=2, index=list(range(3, 11)))
    cpu = torch.device("cpu")
    whole = noise.normal(0, 300, (4,), 128, cpu)  # (300, 8, 4)
    parts = torch.cat([noise.normal(0, 100, (4,), 128, cpu), noise.normal(100, 200, (4,), 128, cpu)])
    assert torch.equal(whole, parts)
    some = ExampleNoise(seed=7, stream=2, index=[5, 9]).normal(50, 10, (4,), 128, cpu)
    assert torch.equal(some, whole[50:60, [2, 6]])
    assert not torch.equal(ExampleNoise(7, 3, [3]).normal(0, 300, (4,), 128, cpu), whole[:, :1])
    flat = whole.flatten()  # standard normal, and examples are uncorrelated
    assert abs(flat.mean()) < 0.05 and abs(flat.std() - 1) < 0.05
    assert abs(torch.corrcoef(whole[:, :2, 0].T)[0, 1]) < 0.2


def test_active_units_and_kl_per_dim_of_a_model_whose_units_are_known() -> None:
    # a linear encoder: loc = (3 x_0, 3 x_1, 0.05 x_0, 0), log_var = 0. Units 0 and 1 vary
    # with x (variance 9/4 on fair coins), unit 2 hardly (0.0006 < 0.01), unit 3 not at all.
    model = tiny("bernoulli", latent=4, hidden=[])
    enc = model.encoder.net[-1]
    torch.nn.init.zeros_(enc.weight), torch.nn.init.zeros_(enc.bias)
    with torch.no_grad():
        enc.weight[0, 0] = enc.weight[1, 1] = 3.0
        enc.weight[2, 0] = 0.05
    x = levels_data(400, 2)
    result = evaluate(model, Split(x), k=0)
    assert result["active_units"] == 2
    # KL(N(m, 1) || N(0, 1)) = m^2 / 2 (Kingma & Welling 2014, Appendix B), x^2 = x
    mean_x = x[:, :2].mean(0)
    expected = [4.5 * mean_x[0].item(), 4.5 * mean_x[1].item(), 0.00125 * mean_x[0].item(), 0.0]
    assert result["kl_per_dim"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert "k" not in result and "log_likelihood" not in result  # k=0 skips the estimate


def test_elbo_metrics_keeps_the_mode_and_an_autoencoder_is_deterministic() -> None:
    model, split = tiny("bernoulli").train(), Split(levels_data(20, 2))
    sampled = [elbo_metrics(model, split, seed=s, cond_dim=0) for s in (0, 1)]
    assert model.training and sampled[0]["reconstruction"] != sampled[1]["reconstruction"]
    ae = [elbo_metrics(model, split, seed=s, cond_dim=0, objective="ae") for s in (0, 1)]
    assert ae[0] == ae[1] and "elbo" not in ae[0] and "kl" not in ae[0]
    with torch.no_grad():
        at_mean = model.eval().decode(model.encode(split.x).mean).log_prob(split.x).mean()
    assert ae[0]["reconstruction"] == pytest.approx(at_mean.item(), rel=1e-6)


@pytest.mark.parametrize(("likelihood", "x", "kwargs", "message"), [
    ("bernoulli", levels_data(5, 17), {"value_range": "binary"}, "holds unit values"),
    ("gaussian", levels_data(5, 17), {"levels": 256}, "not all k/255"),
    ("bernoulli", torch.randn(5, D), {}, "cannot score real-valued data"),
    ("gaussian", levels_data(5, 2), {"value_range": "binary", "levels": 4}, "levels 4"),
])
def test_wrong_claims_about_the_data_are_refused(likelihood, x, kwargs, message) -> None:
    with pytest.raises(VaelabError, match=message):
        evaluate(tiny(likelihood), Split(x), k=2, **kwargs)
