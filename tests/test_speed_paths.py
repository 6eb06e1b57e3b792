"""The fast paths keep the maths: chunked importance sampling, the fused optimiser, bf16
autocast, and denormals flushed to zero.

Speed itself is measured by benchmarks/, never here.
"""

from __future__ import annotations

import pytest
import torch

from vaelab.config import ModelConfig
from vaelab.data import Split
from vaelab.evaluation import CPU_SAMPLE_BUDGET, evaluate, log_likelihood, sample_budget
from vaelab.models import VAE, build_model


def tiny_model(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return build_model(ModelConfig(latent_dim=3, hidden=[16], x_shape=[12])).eval()


def binary_data(n: int, seed: int = 1) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 12), 0.3), generator=torch.Generator().manual_seed(seed))


def record_decodes(model: VAE, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of latent samples in every decoder call."""
    sizes: list[int] = []
    decode = model.decode

    def counting(z: torch.Tensor, y: torch.Tensor | None = None) -> torch.distributions.Distribution:
        sizes.append(z.shape[:-1].numel())
        return decode(z, y)

    monkeypatch.setattr(model, "decode", counting)
    return sizes


@pytest.mark.parametrize(("n", "k", "budget"), [(1, 5000, 2048), (7, 300, 256), (3, 10, 1)])
def test_log_likelihood_decodes_at_most_budget_samples_at_once(
        n: int, k: int, budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    sizes = record_decodes(model, monkeypatch)
    ll = log_likelihood(model, binary_data(n), k=k, budget=budget)
    assert ll.shape == (n,) and torch.isfinite(ll).all()
    assert max(sizes) <= max(budget, n) and sum(sizes) == n * k


def test_chunk_size_changes_the_draws_not_the_estimate() -> None:
    model, x = tiny_model(), binary_data(20)
    small = log_likelihood(model, x, k=4000, budget=64, generator=torch.Generator().manual_seed(0))
    large = log_likelihood(model, x, k=4000, budget=1 << 16,
                           generator=torch.Generator().manual_seed(0))
    assert (small - large).abs().max() < 0.05


def test_evaluate_keeps_decodes_cache_sized_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    assert sample_budget(torch.device("cpu")) == CPU_SAMPLE_BUDGET
    sizes = record_decodes(model, monkeypatch)
    result = evaluate(model, Split(binary_data(5)), k=3000)
    assert max(sizes) <= CPU_SAMPLE_BUDGET
    # the cache-sized chunks give the numbers of one big chunk (per-example noise streams)
    whole = evaluate(model, Split(binary_data(5)), k=3000, budget=1 << 16)
    assert result["n"] == 5 and sizes[-1] == 5 * 3000  # that one was one big chunk
    assert result["nll"] == pytest.approx(whole["nll"], rel=1e-6)


def test_fused_adam_takes_the_same_steps_as_the_default() -> None:
    x = binary_data(64)
    weights = []
    for fused in (False, True):
        model = tiny_model().train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=fused)
        for _ in range(20):
            out = model(x, generator=torch.Generator().manual_seed(3))
            loss = -out.px.log_prob(x).mean() + torch.distributions.kl_divergence(out.qz, out.pz).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-5, atol=1e-6)


def test_bf16_autocast_keeps_distributions_and_weights_in_float32() -> None:
    model, x = tiny_model(), binary_data(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        hidden = model.encoder.net(x)
    assert out.qz.mean.dtype == out.z.dtype == out.px.mean.dtype == torch.float32
    assert hidden.dtype == torch.bfloat16  # the matmuls did run in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_training_tracks_fp32_training(tmp_path) -> None:
    import vaelab
    from tests.conftest import tiny_config

    runs = {p: vaelab.train(tiny_config(epochs=3, precision=p), tmp_path / p, device="cpu",
                            progress=False, figures=False) for p in ("fp32", "bf16")}
    fp32, bf16 = (runs[p].history[-1]["valid_elbo"] for p in ("fp32", "bf16"))
    assert bf16 == pytest.approx(fp32, rel=0.02)  # same data, seed and noise; bf16 rounding
    assert runs["bf16"].config.train.precision == "bf16"  # recorded in the run's config
    assert bf16 > runs["bf16"].history[0]["valid_elbo"]  # it learns




def test_flush_denormals_is_scoped_to_the_block() -> None:
    from vaelab.training import denormals_flushed, flush_denormals

    denormal = torch.tensor([torch.finfo(torch.float32).tiny])  # the smallest normal float32
    assert not denormals_flushed() and (denormal / 8).item() > 0  # torch's default
    with flush_denormals():
        assert denormals_flushed() and (denormal / 8).item() == 0.0
        with flush_denormals():  # nested: the outer block's setting survives the inner one
            pass
        assert denormals_flushed()
    assert not denormals_flushed()  # restored: other code in the process keeps IEEE floats


def test_training_and_every_command_run_with_denormals_flushed(tmp_path, monkeypatch) -> None:
    import vaelab
    from tests.conftest import tiny_config
    from vaelab import training
    from vaelab.cli import main
    from vaelab.cli import sample as sample_command

    seen = []
    run_loop = training.Trainer.run
    monkeypatch.setattr(training.Trainer, "run", lambda *a, **k: seen.append(
        training.denormals_flushed()) or run_loop(*a, **k))
    vaelab.train(tiny_config(epochs=1), tmp_path / "r", device="cpu", progress=False,
                 figures=False)
    run_sample = sample_command.execute
    monkeypatch.setattr(sample_command, "execute", lambda args: seen.append(
        training.denormals_flushed()) or run_sample(args))
    assert main(["sample", str(tmp_path / "r"), "--out", str(tmp_path / "s.png")]) == 0
    assert seen == [True, True] and not training.denormals_flushed()
