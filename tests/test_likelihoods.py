"""Likelihoods: the continuous Bernoulli against quadrature for every logit, the soft-clipped
learned Gaussian scale, and the table of likelihoods with their supports."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from torch.distributions import ContinuousBernoulli

from vaelab.config import LIKELIHOOD_NAMES, ModelConfig
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.models.likelihoods import (
    LIKELIHOODS,
    LOG_SCALE_MAX,
    LOG_SCALE_MIN,
    StableContinuousBernoulli,
    build_likelihood,
    soft_clip,
)

LOGITS = [-50, -30, -15, -5, -1, -0.3, -0.01, -1e-4, 0, 1e-4, 0.01, 0.3, 1, 5, 15, 30, 50]


# ---------------------------------------------------------------- quadrature references (float64)
def _integral(f, lam: float) -> float:
    """int_0^1 f(x) dx for a function that may spike within ~1/|lam| of an edge."""
    width = min(0.5, 1 / max(abs(lam), 1e-12))
    points = [width / 4, width, 1 - width, 1 - width / 4]
    return quad(f, 0, 1, points=sorted(set(points)), epsabs=0, epsrel=1e-13, limit=200)[0]


def quad_log_norm(lam: float) -> float:
    return math.log(_integral(lambda x: math.exp(lam * x), lam))


def quad_mean(lam: float) -> float:
    return _integral(lambda x: x * math.exp(lam * x), lam) / _integral(lambda x: math.exp(lam * x), lam)


def cb(lam: float, dtype: torch.dtype = torch.float64) -> StableContinuousBernoulli:
    return StableContinuousBernoulli(torch.tensor(lam, dtype=dtype))


# ---------------------------------------------------------------- continuous Bernoulli
@pytest.mark.parametrize("lam", LOGITS)
def test_continuous_bernoulli_density_integrates_to_one(lam):
    px = cb(lam)
    total = _integral(lambda x: px.log_prob(torch.tensor(x, dtype=torch.float64)).exp().item(), lam)
    assert total == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-6)])
def test_continuous_bernoulli_normaliser_and_mean_match_quadrature(dtype, tol):
    lam = torch.tensor(LOGITS, dtype=dtype)
    log_norm = -StableContinuousBernoulli(lam).log_prob(torch.zeros_like(lam))  # log p(0) = -log Z
    mean = StableContinuousBernoulli(lam).mean
    exact_log_norm = torch.tensor([quad_log_norm(v) for v in lam.tolist()], dtype=torch.float64)
    exact_mean = torch.tensor([quad_mean(v) for v in lam.tolist()], dtype=torch.float64)
    torch.testing.assert_close(log_norm.double(), exact_log_norm, rtol=tol, atol=tol)
    torch.testing.assert_close(mean.double(), exact_mean, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-6)])
def test_continuous_bernoulli_gradient_is_x_minus_the_mean(dtype, tol):
    # d log p(x|lam) / d lam = x - E[x]: the score of an exponential family.
    lam = torch.tensor(LOGITS, dtype=dtype).repeat(3).requires_grad_()
    x = torch.tensor([0.0, 0.37, 1.0], dtype=dtype).repeat_interleave(len(LOGITS))
    (grad,) = torch.autograd.grad(StableContinuousBernoulli(lam).log_prob(x).sum(), lam)
    (grad_mean,) = torch.autograd.grad(StableContinuousBernoulli(lam).mean.sum(), lam)
    assert torch.isfinite(grad).all() and torch.isfinite(grad_mean).all()
    exact = x.double() - torch.tensor([quad_mean(v) for v in lam.tolist()], dtype=torch.float64)
    torch.testing.assert_close(grad.double(), exact, rtol=0, atol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 2e-6)])
def test_continuous_bernoulli_is_accurate_across_every_logit(dtype, tol):
    # A dense sweep that crosses the series/closed-form switch, against float64 quadrature.
    lam = torch.cat([torch.linspace(-60, 60, 241), torch.linspace(-0.6, 0.6, 121)])
    lam = lam.to(dtype).requires_grad_()
    log_norm = -StableContinuousBernoulli(lam).log_prob(torch.zeros_like(lam))
    (grad,) = torch.autograd.grad(log_norm.sum(), lam)  # = E[x]
    exact_log_norm = torch.tensor([quad_log_norm(v) for v in lam.tolist()], dtype=torch.float64)
    exact_mean = torch.tensor([quad_mean(v) for v in lam.tolist()], dtype=torch.float64)
    torch.testing.assert_close(log_norm.double(), exact_log_norm, rtol=tol / 2, atol=tol)
    torch.testing.assert_close(grad.double(), exact_mean, rtol=0, atol=tol)
    torch.testing.assert_close(StableContinuousBernoulli(lam).mean.double(), exact_mean,
                               rtol=0, atol=tol)


def test_torch_continuous_bernoulli_is_wrong_at_logit_30_and_ours_is_not():
    lam, x = torch.tensor(30.0), torch.tensor(0.5)
    exact = 30.0 * 0.5 - quad_log_norm(30.0)
    ours = cb(30.0, torch.float32).log_prob(x).item()
    old = ContinuousBernoulli(logits=lam).log_prob(x).item()
    assert ours == pytest.approx(exact, abs=1e-5)
    assert abs(ours - old) > 0.1  # torch clamps probs to 1 - 1.2e-7, i.e. logits to ~15.9


def test_the_likelihood_builds_the_stable_distribution_per_element():
    logits = torch.tensor([[[-40.0, 0.0, 1e-3, 40.0]]], dtype=torch.float64)  # (B=1, P=1, D=4)
    x = torch.tensor([[0.1, 0.5, 0.9, 0.95]], dtype=torch.float64)
    px = build_likelihood("continuous-bernoulli", 1)(logits)
    assert px.batch_shape == (1,) and px.event_shape == (4,)
    lams, xs = logits.flatten().tolist(), x.flatten().tolist()
    expected = sum(lam * xi - quad_log_norm(lam) for lam, xi in zip(lams, xs, strict=True))
    assert px.log_prob(x).dtype == torch.float64
    assert px.log_prob(x).item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("lam", [-30.0, -2.0, 0.0, 1e-5, 0.5, 4.0, 40.0])
def test_continuous_bernoulli_samples_have_the_quadrature_mean_and_its_derivative(lam):
    torch.manual_seed(0)
    n = 40_000
    lam_t = torch.tensor(lam, dtype=torch.float64, requires_grad=True)
    x = StableContinuousBernoulli(lam_t).rsample((n,))
    assert ((x >= 0) & (x <= 1)).all()
    sd = x.detach().std().item()
    assert x.mean().item() == pytest.approx(quad_mean(lam), abs=5 * sd / math.sqrt(n))
    # the pathwise gradient of the sample mean estimates d E[x] / d lam = Var[x]
    x.mean().backward()
    h = 1e-3
    slope = (quad_mean(lam + h) - quad_mean(lam - h)) / (2 * h)
    assert lam_t.grad.item() == pytest.approx(slope, rel=0.05, abs=1e-4)


# ---------------------------------------------------------------- soft-clipped Gaussian scale
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_soft_clip_stays_within_the_bounds_and_is_increasing(dtype):
    s = torch.linspace(-1e3, 1e3, 200_001, dtype=dtype)
    y = soft_clip(s)
    assert y.min() >= LOG_SCALE_MIN and y.max() <= LOG_SCALE_MAX
    assert (y.diff() >= 0).all()
    assert y[0].item() == pytest.approx(LOG_SCALE_MIN) and y[-1].item() == pytest.approx(LOG_SCALE_MAX)


@pytest.mark.parametrize("distance", [5.0, 20.0, 50.0])
def test_soft_clip_gradient_is_nonzero_far_outside_the_bounds(distance):
    s = torch.tensor([LOG_SCALE_MIN - distance, LOG_SCALE_MAX + distance], requires_grad=True)
    soft_clip(s).sum().backward()
    assert torch.isfinite(s.grad).all() and (s.grad > 0).all()  # a clamp gives exactly 0 here
    # and it shrinks like e^-distance, as a softplus tail does (checked against the exact tail)
    assert s.grad.log().tolist() == pytest.approx([-distance, -distance], rel=2e-3)


def test_soft_clip_gradient_is_finite_everywhere():
    s = torch.linspace(-1e3, 1e3, 20_001, requires_grad=True)
    soft_clip(s).sum().backward()
    assert torch.isfinite(s.grad).all() and (s.grad >= 0).all()


def test_soft_clip_is_close_to_the_identity_well_inside_the_bounds():
    s = torch.linspace(LOG_SCALE_MIN + 5, LOG_SCALE_MAX - 5, 101, requires_grad=True)
    y = soft_clip(s)
    y.sum().backward()
    assert (y - s).abs().max() < 1e-2
    assert (s.grad - 1).abs().max() < 1e-2


def test_learned_gaussian_scale_is_bounded_for_extreme_decoder_outputs():
    loc = torch.zeros(3)
    raw = torch.tensor([-1e3, 0.0, 1e3], requires_grad=True)
    px = build_likelihood("gaussian-learned", 1)(torch.stack([loc, raw]).unsqueeze(0))  # (1, 2, 3)
    scale = px.base_dist.scale[0]
    assert scale[0].item() == pytest.approx(math.exp(LOG_SCALE_MIN), rel=1e-5)
    assert scale[2].item() == pytest.approx(math.exp(LOG_SCALE_MAX), rel=1e-5)
    assert scale[1].item() == pytest.approx(1.0, abs=1e-2)
    px.log_prob(torch.full((1, 3), 0.5)).sum().backward()
    assert torch.isfinite(raw.grad).all()


def test_global_gaussian_scale_starts_at_obs_scale_and_learns():
    for obs_scale in (0.003, 0.1, 0.5, 7.0):
        glob = build_likelihood("gaussian-global", 1, obs_scale=obs_scale)
        px = glob(torch.zeros(2, 1, 4))
        assert px.base_dist.scale[0, 0].item() == pytest.approx(obs_scale, rel=1e-6)
    # residuals of standard deviation 0.2: gradient ascent on log p moves the scale towards 0.2
    x = torch.randn(4096, 4, generator=torch.Generator().manual_seed(0)) * 0.2
    opt = torch.optim.Adam(glob.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        (-glob(torch.zeros(4096, 1, 4)).log_prob(x).mean()).backward()
        opt.step()
    learned = glob(torch.zeros(1, 1, 4)).base_dist.scale[0, 0].item()
    assert learned == pytest.approx(x.pow(2).mean().sqrt().item(), rel=1e-2)


def test_global_gaussian_rejects_a_starting_scale_outside_the_bounds():
    with pytest.raises(VaelabError, match="model.obs_scale 0.001"):
        build_likelihood("gaussian-global", 1, obs_scale=1e-3)


# ---------------------------------------------------------------- the table
def test_the_table_lists_the_config_names_in_order():
    assert tuple(LIKELIHOODS) == LIKELIHOOD_NAMES


@pytest.mark.parametrize("name", LIKELIHOOD_NAMES)
def test_each_entry_carries_its_class_support_and_parameter_count(name):
    entry = LIKELIHOODS[name]
    model = build_model(ModelConfig(likelihood=name, x_shape=[1, 3, 2], hidden=[8]))
    assert isinstance(model.likelihood, entry.cls)
    assert model.likelihood.support == entry.support
    assert model.likelihood.num_params == entry.num_params
    assert entry.description and "\n" not in entry.description
    # the support says where the distribution puts its mass: check it on the built px
    params = torch.randn(2, entry.num_params, 1, 3, 2, dtype=torch.float64)
    px = model.likelihood(params)
    x = {"binary": torch.bernoulli(torch.full((2, 1, 3, 2), 0.5, dtype=torch.float64)),
         "unit": torch.rand(2, 1, 3, 2, dtype=torch.float64),
         "real": torch.randn(2, 1, 3, 2, dtype=torch.float64) * 5}[entry.support]
    assert torch.isfinite(px.log_prob(x)).all()


def test_supports_are_the_ones_evaluation_expects():
    supports = {name: entry.support for name, entry in LIKELIHOODS.items()}
    assert supports == {"bernoulli": "binary", "continuous-bernoulli": "unit", "gaussian": "real",
                        "gaussian-learned": "real", "gaussian-global": "real"}


def test_bernoulli_support_is_a_probability_mass_on_0_1():
    px = build_likelihood("bernoulli", 1)(torch.randn(1, 1, 3, dtype=torch.float64))
    corners = torch.tensor(np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T,
                           dtype=torch.float64)  # (8, 3): all of {0, 1}^3
    assert px.log_prob(corners).exp().sum().item() == pytest.approx(1.0, abs=1e-12)


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="bernoulli, continuous-bernoulli, gaussian"):
        build_likelihood("poisson", 1)
