"""Models: MLP and conv nets for any image size, conditioning, and the likelihood families."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vaelab.config import ModelConfig
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.models.conv import ConvDecoder, ConvEncoder, stage_sizes
from vaelab.models.likelihoods import LIKELIHOODS, build_likelihood


@pytest.mark.parametrize("x_shape", [[1, 8, 8], [1, 28, 20], [1, 28, 28], [3, 7, 5], [3, 13, 17],
                                     [1, 1, 1], [3, 32, 32]])
@pytest.mark.parametrize("channels", [[8], [8, 16], [4, 8, 16]])
def test_conv_nets_round_trip_any_image_size(x_shape, channels):
    enc = ConvEncoder(x_shape, 3, channels, [16], "relu")
    dec = ConvDecoder(x_shape, 3, channels, [16], "relu", num_params=2)
    x = torch.rand(5, *x_shape)
    loc, log_var = enc(x)
    assert loc.shape == log_var.shape == (5, 3)
    assert dec(loc).shape == (5, 2, *x_shape)


def test_stage_sizes_halve_rounding_up():
    assert stage_sizes(28, 20, 3) == [(28, 20), (14, 10), (7, 5), (4, 3)]
    assert stage_sizes(1, 1, 2) == [(1, 1), (1, 1), (1, 1)]


@pytest.mark.parametrize("arch", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", list(LIKELIHOODS))
def test_built_models_give_distributions_of_the_right_shape(arch, likelihood):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, latent_dim=4, hidden=[16], channels=[4, 8],
                                    likelihood=likelihood, x_shape=[1, 6, 5]))
    x = torch.rand(3, 1, 6, 5)
    out = model(x, num_samples=2)
    assert out.z.shape == (2, 3, 4)
    assert out.px.batch_shape == (2, 3) and out.px.event_shape == (1, 6, 5)
    assert out.px.log_prob(x).shape == (2, 3)
    assert model.sample(7).shape == (7, 1, 6, 5)


def test_conv_arch_on_flat_data_is_a_clear_error():
    with pytest.raises(VaelabError, match="arch conv needs images"):
        build_model(ModelConfig(arch="conv", x_shape=[64]))


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_conditional_models_use_y_in_encoder_and_decoder(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, latent_dim=2, hidden=[16], channels=[4],
                                    x_shape=[1, 8, 8], cond_dim=3))
    x, z = torch.rand(2, 1, 8, 8), torch.randn(2, 2)
    y0, y1 = F.one_hot(torch.tensor([0, 0]), 3).float(), F.one_hot(torch.tensor([1, 1]), 3).float()
    assert not torch.allclose(model.encode(x, y0).mean, model.encode(x, y1).mean)
    assert not torch.allclose(model.decode(z, y0).mean, model.decode(z, y1).mean)
    # y (B, Y) broadcasts over S samples of z (S, B, D)
    assert model(x, y0, num_samples=3).px.batch_shape == (3, 2)
    with pytest.raises(ValueError, match="conditional"):
        model.encode(x)
    # unconditioned sampling draws the classes in turn (a uniform p(y))
    gen = torch.Generator().manual_seed(1)
    drawn = model.sample(6, generator=gen)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    turn = F.one_hot(torch.arange(6) % 3, 3).float()
    torch.testing.assert_close(drawn, model.decode(z, turn).mean)



@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_encoding_rows_shares_the_work_and_changes_nothing(arch):
    """encode(x, y, rows) (M2's one pass per class) equals encoding x[rows] with y, values and
    gradients, though the first layer multiplies each example once."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, latent_dim=2, hidden=[16], channels=[4],
                                    x_shape=[1, 8, 8], cond_dim=3))
    x = torch.rand(4, 1, 8, 8)
    rows = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 2])
    y = F.one_hot(torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2]), 3).float()
    shared, plain = model.encode(x, y, rows=rows), model.encode(x[rows], y)
    torch.testing.assert_close(shared.mean, plain.mean)
    torch.testing.assert_close(shared.stddev, plain.stddev)
    grads = [torch.autograd.grad(q.mean.square().sum() + q.stddev.sum(), model.encoder.parameters())
             for q in (shared, plain)]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)

# ------------------------------------------------------------------------------ likelihoods
def test_bernoulli_log_prob_is_minus_binary_cross_entropy():
    logits, x = torch.randn(4, 1, 3, 3), torch.rand(4, 3, 3)
    px = build_likelihood("bernoulli", 2)(logits)
    bce = F.binary_cross_entropy_with_logits(logits[:, 0], x, reduction="none").sum((1, 2))
    torch.testing.assert_close(px.log_prob(x), -bce)


@pytest.mark.parametrize("logit", [-6.0, -1.0, 0.0, 1e-4, 2.5])
def test_continuous_bernoulli_is_a_normalised_density_on_the_unit_interval(logit):
    px = build_likelihood("continuous-bernoulli", 1)(torch.full((1, 1, 1), logit))
    grid = torch.linspace(0, 1, 20001).unsqueeze(-1)  # (N, 1): N points of a 1-element x
    density = px.log_prob(grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=1e-3)
    assert 0 <= px.mean.item() <= 1


def test_continuous_bernoulli_differs_from_bernoulli_by_its_normaliser():
    logits, x = torch.randn(4, 1, 5), torch.rand(4, 5)
    cb = build_likelihood("continuous-bernoulli", 1)(logits).log_prob(x)
    b = build_likelihood("bernoulli", 1)(logits).log_prob(x)
    lam = torch.sigmoid(logits[:, 0])
    # the normaliser C(lambda) of Loaiza-Ganem & Cunningham (2019)
    log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))
    torch.testing.assert_close(cb - b, log_c.sum(-1), rtol=1e-4, atol=1e-4)


def test_gaussian_likelihoods_match_the_closed_form():
    loc, log_scale, x = torch.randn(3, 4), torch.randn(3, 4) * 0.5, torch.randn(3, 4)

    def normal_log_prob(scale: torch.Tensor) -> torch.Tensor:
        return (-0.5 * ((x - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    fixed = build_likelihood("gaussian", 1, obs_scale=0.3)(loc.unsqueeze(1))
    torch.testing.assert_close(fixed.log_prob(x), normal_log_prob(torch.full_like(loc, 0.3)))
    learned = build_likelihood("gaussian-learned", 1)(torch.stack([loc, log_scale], 1))
    torch.testing.assert_close(learned.log_prob(x), normal_log_prob(learned.base_dist.scale))
    # the scale is exp(log_scale) but for the soft clip, which bends it by ~e^-(6 + log_scale)
    torch.testing.assert_close(learned.base_dist.scale, log_scale.exp(), rtol=2e-2, atol=0)
    extreme = build_likelihood("gaussian-learned", 1)(torch.stack([loc, loc * 0 - 50.0], 1))
    assert torch.isfinite(extreme.log_prob(x)).all()  # the scale is soft-clipped at e^-6
    glob = build_likelihood("gaussian-global", 1, obs_scale=0.5)
    px = glob(loc.unsqueeze(1))
    torch.testing.assert_close(px.log_prob(x), normal_log_prob(torch.full_like(loc, 0.5)))
    px.log_prob(x).sum().backward()
    assert glob.log_scale.grad is not None and glob.log_scale.grad.abs() > 0


def test_learned_likelihood_parameters_live_in_the_model():
    model = build_model(ModelConfig(likelihood="gaussian-global", x_shape=[5], hidden=[8]))
    assert "likelihood.log_scale" in model.state_dict()
    model = build_model(ModelConfig(likelihood="gaussian-learned", x_shape=[1, 4, 4],
                                    arch="conv", channels=[4], hidden=[8]))
    assert model.decoder(torch.randn(2, 8)).shape == (2, 2, 1, 4, 4)  # loc and log-scale


def test_unknown_likelihood_names_the_choices():
    with pytest.raises(ValueError, match="continuous-bernoulli"):
        build_likelihood("poisson", 1)
