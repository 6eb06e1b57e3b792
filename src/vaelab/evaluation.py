"""Evaluation: test ELBO, importance-sampled log p(x), KL per dimension, active units.

The importance-sampled estimate (Burda et al. 2016, eq. 8 with q as the proposal)
    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log k,  z_k ~ q(z|x)
is computed in chunks of samples with a running logsumexp, so memory stays bounded for any k.
Small chunks are also the fast ones on a CPU: ~2,000 decoded samples at a time keep the
decoder's activations in cache, about 2x the speed of 32,768 (benchmarks/eval_speed.py).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from vaelab.data import Split
from vaelab.models import VAE, one_hot, rsample
from vaelab.models.vae import Output
from vaelab.objectives import active_units, elbo, kl_per_dim, log_weights

SAMPLE_BUDGET = 1 << 15  # latent samples decoded at once on an accelerator: bounds memory
CPU_SAMPLE_BUDGET = 1 << 11  # the same on a CPU, where cache-sized chunks run fastest


def sample_budget(device: torch.device) -> int:
    """How many latent samples to decode at once on `device` (a speed choice, not a result)."""
    return CPU_SAMPLE_BUDGET if device.type == "cpu" else SAMPLE_BUDGET


@torch.no_grad()
def log_likelihood(model: VAE, x: Tensor, y: Tensor | None = None, k: int = 1000,
                   generator: torch.Generator | None = None,
                   budget: int | None = None) -> Tensor:
    """Importance-sampled log p(x) per example (B,), with k samples from q(z|x) each.

    `budget` caps the samples decoded at once (default: `sample_budget(x.device)`).
    """
    budget = budget or sample_budget(x.device)
    qz = model.encode(x, y)
    pz = model.prior(qz.mean)
    chunk = max(1, min(k, budget // max(len(x), 1)))
    total = torch.full((len(x),), -math.inf, device=x.device)
    for start in range(0, k, chunk):
        s = min(chunk, k - start)
        z = rsample(qz, s, generator)  # (s, B, D)
        logw = log_weights(Output(qz=qz, pz=pz, px=model.decode(z, y), z=z), x)  # (s, B)
        total = torch.logaddexp(total, torch.logsumexp(logw, 0))
    return total - math.log(k)


@torch.no_grad()
def evaluate(model: VAE, split: Split, *, k: int = 500, batch_size: int = 0, seed: int = 0,
             cond_dim: int = 0, progress: bool = False) -> dict[str, Any]:
    """All the numbers of `vaelab evaluate` on one split, as a JSON-ready dict.

    Args:
        model: a trained VAE (put in eval mode here).
        split: the data, x (N, *x_shape) and labels y (N,) used only by conditional models.
        k: importance samples per example for log p(x); 0 skips the estimate.
        batch_size: examples per batch (0: chosen so k samples of a batch fit the budget).
        seed: seeds the sampling, so an evaluation is repeatable.
        cond_dim: the model's condition size (conditional VAEs get one-hot labels).
    """
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    n = len(split)
    batch_size = batch_size or max(1, min(n, 1000, sample_budget(device) // max(k, 1) or 1))
    bound, recon, kl, logp, kl_dims, means = [], [], [], [], [], []
    start = time.perf_counter()
    batches = range(0, n, batch_size)
    for i in tqdm(batches, desc="evaluate", unit="batch", disable=not progress):
        x = split.x[i:i + batch_size].to(device)
        y = None if split.y is None else one_hot(split.y[i:i + batch_size].to(device), cond_dim)
        out = model(x, y, generator=gen)
        loss = elbo(out, x)
        bound.append(loss.elbo), recon.append(loss.reconstruction), kl.append(loss.kl)
        kl_dims.append(kl_per_dim(out.qz, out.pz).float().sum(0))
        means.append(out.qz.mean.float())
        if k:
            logp.append(log_likelihood(model, x, y, k=k, generator=gen))
    x_dims = math.prod(model.x_shape)
    mu = torch.cat(means)  # (N, D)
    unit_var = mu.var(0) if n > 1 else torch.zeros(model.latent_dim)
    result: dict[str, Any] = {
        "n": n,
        "elbo": torch.cat(bound).mean().item(),
        "reconstruction": torch.cat(recon).mean().item(),
        "kl": torch.cat(kl).mean().item(),
        "kl_per_dim": (torch.stack(kl_dims).sum(0) / n).tolist(),
        "active_units": int(active_units(mu).sum()),
        "latent_dim": model.latent_dim,
        "posterior_mean_variance": unit_var.tolist(),
    }
    if k:
        ll = torch.cat(logp)
        result |= {
            "k": k,
            "log_likelihood": ll.mean().item(),
            "log_likelihood_stderr": (ll.std() / math.sqrt(n)).item() if n > 1 else 0.0,
            "nll": -ll.mean().item(),
            "bits_per_dim": -ll.mean().item() / (x_dims * math.log(2)),
        }
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


@torch.no_grad()
def elbo_metrics(model: VAE, split: Split, *, seed: int = 0, cond_dim: int = 0,
                 batch_size: int = 1000) -> dict[str, Any]:
    """The average ELBO and its parts on a split, with a fixed seed (deterministic), and the
    collapse diagnostics: KL per latent dimension and the number of active units. Training's
    per-epoch validation is this function (vaelab.workflows.train passes it to fit)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    sums = torch.zeros(3, device=device)
    kl_dims = torch.zeros(model.latent_dim, device=device)
    locs = []
    for i in range(0, len(split), batch_size):
        x = split.x[i:i + batch_size].to(device)
        y = None if split.y is None else split.y[i:i + batch_size].to(device)
        out = model(x, one_hot(y, cond_dim), generator=gen)
        loss = elbo(out, x)
        sums += torch.stack([loss.elbo.sum(), loss.reconstruction.sum(), loss.kl.sum()])
        kl_dims += kl_per_dim(out.qz, out.pz).float().sum(0)
        locs.append(out.qz.mean.float())
    model.train(was_training)
    e, r, k = (sums / len(split)).tolist()
    return {"elbo": e, "reconstruction": r, "kl": k,
            "kl_per_dim": [round(v, 5) for v in (kl_dims / len(split)).tolist()],
            "active_units": int(active_units(torch.cat(locs)).sum())}


def format_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The evaluation dict as (label, value) rows, for the terminal table and the HTML report."""
    rows = [("examples", f"{result['n']}"),
            ("ELBO (nats)", f"{result['elbo']:.3f}"),
            ("  E_q log p(x|z)", f"{result['reconstruction']:.3f}"),
            ("  KL(q(z|x) || p(z))", f"{result['kl']:.3f}")]
    if "log_likelihood" in result:
        rows += [(f"log p(x), IS k={result['k']}",
                  f"{result['log_likelihood']:.3f} +- {result['log_likelihood_stderr']:.3f}"),
                 ("NLL (nats)", f"{result['nll']:.3f}"),
                 ("bits/dim", f"{result['bits_per_dim']:.4f}")]
    rows.append(("active units", f"{result['active_units']} / {result['latent_dim']}"))
    rows.append(("KL per dim", " ".join(f"{v:.2f}" for v in result["kl_per_dim"])))
    return rows


def format_table(result: dict[str, Any]) -> str:
    """The evaluation dict as aligned text lines for a terminal."""
    rows = format_rows(result)
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
