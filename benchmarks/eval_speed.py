"""Importance-sampled log-likelihood speed: vaelab's chunked estimator vs a one-example loop.

The IWAE paper's protocol (Burda et al. 2016): k = 5000 samples from q(z|x) per test image, on the
10,000 MNIST test images binarized once. Each contestant runs in a fresh process its peak
memory is the highest resident set size (RSS, read from /proc/self/statm every 2 ms by a
thread; Linux only) minus the RSS when the estimate starts. RSS counts torch's C++ allocations,
which tracemalloc cannot see; ru_maxrss cannot be used, as loading the data set a higher mark.

    python benchmarks/eval_speed.py --n 200 --k 5000     # a reduced size: minutes on 2 cores
    python benchmarks/eval_speed.py                      # the full protocol (n 10000, k 5000)
    python benchmarks/eval_speed.py --run runs/mnist     # a trained run instead of a quick one

(a) vaelab: `vaelab.evaluation.evaluate(model, split, k=k)` (ELBO, KL, active units and the
    IS estimate, as `vaelab evaluate` computes them).
(b) reference: a loop over examples: k samples of z for one x, log w by hand (Bernoulli
    log-likelihood from the logits, Gaussian log-densities), logsumexp - log k.
The two mean estimates must agree to 0.05 nat (they use different random draws).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe, load_mnist, machine, mnist_dir, stats, table, write_json  # noqa: E402, I001

FULL_N, FULL_K = 10000, 5000
BINARIZE_SEED = 4321  # as vaelab.data: the test set is binarized once, with this seed
TOLERANCE = 0.05  # nats


def test_images(n: int) -> torch.Tensor:
    """The first n MNIST test images, binarized once (as load_data(binarize='dynamic') does)."""
    x, _ = load_mnist("test")
    if mnist_dir() is not None:  # grey levels -> one fixed binarization
        x = torch.bernoulli(x, generator=torch.Generator().manual_seed(BINARIZE_SEED))
    return x[:n].contiguous()


def quick_model(run: Path, epochs: int, hidden: list[int]) -> None:
    """Trains the MLP to evaluate: dynamically binarized MNIST, 784-hidden-20, Bernoulli."""
    import vaelab
    from vaelab.config import Config, DataConfig, ModelConfig, TrainConfig
    from vaelab.data import Data, Split

    x, _ = load_mnist("train")
    config = Config(data=DataConfig(name="benchmark", binarize="dynamic", valid_fraction=0.0),
                    model=ModelConfig(latent_dim=20, hidden=hidden, likelihood="bernoulli"),
                    train=TrainConfig(epochs=epochs, batch_size=128))
    data = Data(name="benchmark", train=Split(x), test=Split(x[:10]), value_range="unit")
    vaelab.train(config, run, data=data, device="cpu", progress=False, figures=False)


@torch.no_grad()
def reference_log_likelihood(model: torch.nn.Module, x: torch.Tensor, k: int,
                             generator: torch.Generator) -> torch.Tensor:
    """log p(x) ~= logsumexp_k log w_k - log k, one example at a time (Bernoulli models)."""
    out = []
    log2pi = math.log(2 * math.pi)
    for xi in x:
        qz = model.encode(xi[None])
        loc, scale = qz.base_dist.loc, qz.base_dist.scale  # (1, D)
        eps = torch.randn(k, loc.shape[-1], generator=generator)
        z = loc + scale * eps  # (k, D)
        logits = model.decoder(z).reshape(k, -1)  # (k, 784)
        log_px = -F.binary_cross_entropy_with_logits(
            logits, xi.reshape(1, -1).expand(k, -1), reduction="none").sum(-1)
        log_pz = -0.5 * (z.pow(2) + log2pi).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + log2pi).sum(-1) - scale.log().sum(-1)
        out.append(torch.logsumexp(log_px + log_pz - log_qz, 0) - math.log(k))
    return torch.stack(out)


def worker(args: argparse.Namespace) -> None:
    import vaelab
    from vaelab import evaluation

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.budget:  # compare chunk sizes: the samples decoded at once
        evaluation.CPU_SAMPLE_BUDGET = evaluation.SAMPLE_BUDGET = args.budget
    model = vaelab.load(args.run)
    x = test_images(args.n)
    with PeakRSS() as rss:
        start = time.perf_counter()
        ll = estimate(args, model, x)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "log_likelihood": ll,
                      "peak_rss_growth_mib": rss.peak_growth / 2**20}))


def estimate(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor) -> float:
    from vaelab import evaluation
    from vaelab.data import Split

    if args.worker == "vaelab":
        return evaluation.evaluate(model, Split(x), k=args.k, seed=0)["log_likelihood"]
    gen = torch.Generator().manual_seed(0)
    return reference_log_likelihood(model, x, args.k, gen).mean().item()


class PeakRSS:
    """The highest resident set size seen while the block runs, minus the RSS at its start."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.done.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def peak_growth(self) -> int:
        return self.peak - self.start


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(args: argparse.Namespace, name: str, run: Path) -> dict[str, float]:
    worker, _, budget = name.partition("@")
    cmd = [sys.executable, __file__, "--worker", worker, "--run", str(run), "--n", str(args.n),
           "--k", str(args.k), "--threads", str(args.threads), "--budget", budget or "0"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=FULL_N, help="test images (default all 10000)")
    p.add_argument("--k", type=int, default=FULL_K, help="importance samples per image")
    p.add_argument("--reps", type=int, default=1, help="alternating repetitions")
    p.add_argument("--run", type=Path, help="a trained run folder (else a quick model is trained)")
    p.add_argument("--train-epochs", type=int, default=1, help="epochs of the quick model")
    p.add_argument("--hidden", default="400,400", help="hidden sizes of the quick model")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--budgets", default="", help="also time vaelab with these samples-decoded-"
                   "at-once budgets, e.g. 32768 (the chunk size before it was tuned)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/eval_speed.json)")
    p.add_argument("--worker", choices=["vaelab", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--budget", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    info = machine()
    print(describe(info))
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run
        if run is None:
            run = Path(tmp) / "model"
            hidden = [int(h) for h in args.hidden.split(",")]
            print(f"training a quick model: {args.train_epochs} epoch(s), MLP 784-"
                  f"{'-'.join(map(str, hidden))}-20 on dynamically binarized MNIST ...", flush=True)
            quick_model(run, args.train_epochs, hidden)
        print(f"IS log-likelihood, n={args.n} test images, k={args.k}, {args.reps} repetition(s)")
        names = ["vaelab", "reference"] + [f"vaelab@{b}" for b in args.budgets.split(",") if b]
        found: dict[str, list[dict[str, float]]] = {name: [] for name in names}
        for rep in range(args.reps):
            for name in (names if rep % 2 == 0 else names[::-1]):
                r = measure(args, name, run)
                found[name].append(r)
                print(f"  rep {rep + 1}: {name:12s} {r['seconds']:8.1f} s  "
                      f"log p(x) {r['log_likelihood']:.3f}  "
                      f"peak RSS growth {r['peak_rss_growth_mib']:.0f} MiB", flush=True)

    results = {}
    for name, rs in found.items():
        results[name] = {"seconds": stats([r["seconds"] for r in rs]),
                         "log_likelihood": stats([r["log_likelihood"] for r in rs]),
                         "peak_rss_growth_mib": stats([r["peak_rss_growth_mib"] for r in rs])}
    a, b = results["vaelab"], results["reference"]
    diff = abs(a["log_likelihood"]["median"] - b["log_likelihood"]["median"])
    speedup = b["seconds"]["median"] / a["seconds"]["median"]
    full = FULL_N * FULL_K / (args.n * args.k)
    rows = [[name, f"{r['seconds']['median']:.1f}",
             f"{b['seconds']['median'] / r['seconds']['median']:.2f}",
             f"{r['log_likelihood']['median']:.3f}", f"{r['peak_rss_growth_mib']['median']:.0f}",
             f"{r['seconds']['median'] * full / 60:.1f}" if full != 1 else "-"]
            for name, r in results.items()]
    print()
    print(table(["estimator", "seconds", "x reference", "log p(x) (nats)",
                 "peak RSS growth (MiB)", "extrapolated full minutes"], rows))
    print(f"vaelab is {speedup:.2f}x the reference; estimates differ by {diff:.3f} nats "
          f"({'within' if diff <= TOLERANCE else 'OUTSIDE'} {TOLERANCE})")
    if full != 1:
        print(f"note: 'extrapolated full minutes' scales the measured time by n*k to the full "
              f"protocol (n={FULL_N}, k={FULL_K}), x{full:.1f}: an estimate, not a measurement")
    out = write_json({"benchmark": "eval_speed", "machine": info, "n": args.n, "k": args.k,
                      "reps": args.reps,
                      "memory": "peak RSS during the estimate minus RSS at its start (2 ms polls)",
                      "results": results, "speedup_vs_reference": speedup,
                      "abs_difference_nats": diff, "agree": diff <= TOLERANCE,
                      "extrapolation_factor_to_full": full}, args.out, "eval_speed")
    print(f"wrote {out}")
    if diff > TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
