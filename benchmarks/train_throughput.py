"""Training throughput (samples/s): vaelab's loop vs a plain PyTorch loop vs pythae's VAE.

Same data (MNIST train, grey levels in [0, 1], or random binary data when MNIST is absent), same
maths: MLP 784-400-20 (ReLU), Bernoulli likelihood, Adam lr 1e-3, fp32, one epoch timed after a
warm-up epoch. Every measurement runs in a fresh process, the contestants alternate within each
repetition, and ratios are taken within one run so machine-wide noise mostly cancels.

    python benchmarks/train_throughput.py                    # batch 128 and 512, 5 repetitions
    python benchmarks/train_throughput.py --reps 3 --n-train 20000
    python benchmarks/train_throughput.py --pythae-python /tmp/pythae-venv/bin/python

(a) vaelab: `vaelab.train` with figures and progress off; the time is the second epoch's
    "seconds" from metrics.jsonl (training steps and logging only: no validation split is given).
    vaelab-bf16 is the same with `precision="bf16"` (autocast): not the same maths, so it is
    reported beside the fp32 contestants and never counted in the targets.
(b) reference: written here in the style of pytorch/examples vae/main.py: a DataLoader over a
    TensorDataset, sigmoid + binary cross-entropy, loss.item() every step.
(c) pythae: pythae.models.VAE with the same 784-400-20 networks, timed through its BaseTrainer's
    train_step (one epoch). Needs pythae importable by --pythae-python (default: this Python,
    then /tmp/pythae-venv/bin/python); skipped with a note otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe, load_mnist, machine, stats, table, write_json  # noqa: E402

HIDDEN, LATENT, LR = 400, 20, 1e-3
CONTESTANTS = ("vaelab", "reference", "pythae", "vaelab-bf16")


# ---------------------------------------------------------------- (a) vaelab
def run_vaelab(x: torch.Tensor, batch_size: int, precision: str = "fp32") -> float:
    """Seconds for one epoch (the second) of vaelab.train."""
    import vaelab
    from vaelab.config import Config, DataConfig, ModelConfig, TrainConfig
    from vaelab.data import Data, Split

    config = Config(data=DataConfig(name="benchmark", valid_fraction=0.0),
                    model=ModelConfig(latent_dim=LATENT, hidden=[HIDDEN], likelihood="bernoulli"),
                    train=TrainConfig(epochs=2, batch_size=batch_size, lr=LR,
                                      precision=precision))
    data = Data(name="benchmark", train=Split(x), test=Split(x[:1000]), value_range="unit")
    with tempfile.TemporaryDirectory() as tmp:
        result = vaelab.train(config, Path(tmp) / "run", data=data, device="cpu",
                              progress=False, figures=False)
    return result.history[1]["seconds"]


# ---------------------------------------------------------------- (b) the plain reference
class ReferenceVAE(nn.Module):
    """pytorch/examples vae/main.py, with the sizes as arguments."""

    def __init__(self, d: int = 784, h: int = HIDDEN, k: int = LATENT) -> None:
        super().__init__()
        self.d = d
        self.fc1, self.fc21, self.fc22 = nn.Linear(d, h), nn.Linear(h, k), nn.Linear(h, k)
        self.fc3, self.fc4 = nn.Linear(k, h), nn.Linear(h, d)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, self.d))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def reference_loss(recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor,
                   logvar: torch.Tensor) -> torch.Tensor:
    bce = F.binary_cross_entropy(recon_x, x.view(-1, recon_x.shape[-1]), reduction="sum")
    # Kingma & Welling (2014), Appendix B
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_reference(x: torch.Tensor, batch_size: int) -> float:
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=batch_size, shuffle=True)
    model = ReferenceVAE(d=x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)

    def epoch() -> float:
        model.train()
        train_loss = 0.0
        for data, _ in loader:
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = reference_loss(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        return train_loss

    epoch()  # warm-up
    start = time.perf_counter()
    epoch()
    return time.perf_counter() - start


# ---------------------------------------------------------------- (c) pythae
def run_pythae(x: torch.Tensor, batch_size: int) -> float:
    import logging

    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    logging.disable(logging.INFO)

    class Encoder(BaseEncoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(x.shape[1], HIDDEN), nn.ReLU())
            self.embedding, self.log_var = nn.Linear(HIDDEN, LATENT), nn.Linear(HIDDEN, LATENT)

        def forward(self, x: torch.Tensor) -> ModelOutput:
            h = self.net(x.reshape(x.shape[0], -1))
            return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))

    class Decoder(BaseDecoder):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(),
                                     nn.Linear(HIDDEN, x.shape[1]), nn.Sigmoid())

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=self.net(z))

    torch.manual_seed(0)
    config = VAEConfig(input_dim=(x.shape[1],), latent_dim=LATENT, reconstruction_loss="bce")
    model = VAE(config, encoder=Encoder(), decoder=Decoder())
    with tempfile.TemporaryDirectory() as tmp:
        trainer_config = BaseTrainerConfig(output_dir=tmp, per_device_train_batch_size=batch_size,
                                           learning_rate=LR, num_epochs=2, no_cuda=True)
        trainer = BaseTrainer(model, train_dataset=BaseDataset(x, torch.zeros(len(x))),
                              training_config=trainer_config)
        trainer.prepare_training()
        trainer.train_step(1)  # warm-up
        start = time.perf_counter()
        trainer.train_step(2)
        return time.perf_counter() - start


# ---------------------------------------------------------------- driver
def worker(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    x, _ = load_mnist("train")
    x = x[:args.n_train].contiguous()
    seconds = {"vaelab": run_vaelab, "reference": run_reference, "pythae": run_pythae,
               "vaelab-bf16": lambda x, bs: run_vaelab(x, bs, "bf16")}[args.worker](
        x, args.batch_size)
    print(json.dumps({"seconds": seconds, "samples": len(x)}))


def pythae_python(flag: str | None) -> str | None:
    """A Python that can import pythae: --pythae-python, this one, or /tmp/pythae-venv."""
    candidates = [flag] if flag else [sys.executable, "/tmp/pythae-venv/bin/python"]
    for py in candidates:
        if py and Path(py).exists() and subprocess.run(
                [py, "-c", "import pythae"], capture_output=True).returncode == 0:
            return py
    return None


def measure(python: str, name: str, batch_size: int, n_train: int, threads: int) -> float:
    cmd = [python, __file__, "--worker", name, "--batch-size", str(batch_size),
           "--n-train", str(n_train), "--threads", str(threads)]
    env = os.environ | {"TQDM_DISABLE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name} worker failed:\n{done.stderr[-3000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["samples"] / out["seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="128,512")
    p.add_argument("--reps", type=int, default=5, help="alternating repetitions")
    p.add_argument("--n-train", type=int, default=60000, help="examples per timed epoch")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads in every contestant (0: torch's default)")
    p.add_argument("--pythae-python", help="a Python that can import pythae")
    p.add_argument("--skip", default="", help="comma-separated contestants to leave out "
                   f"({', '.join(CONTESTANTS)})")
    p.add_argument("--out", help="JSON path (default benchmarks/results/train_throughput.json)")
    p.add_argument("--worker", choices=CONTESTANTS, help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    info = machine()
    _, data_name = load_mnist("train")
    pythons = {"vaelab": sys.executable, "reference": sys.executable,
               "pythae": pythae_python(args.pythae_python), "vaelab-bf16": sys.executable}
    notes = []
    names = [c for c in CONTESTANTS if c not in args.skip.split(",")]
    if "pythae" in names and pythons["pythae"] is None:
        names.remove("pythae")
        notes.append("pythae skipped: not importable (make a venv with --system-site-packages "
                     "and pip install pythae there, then pass --pythae-python)")
    print(describe(info))
    print(f"data: {data_name}, {args.n_train} examples per timed epoch; "
          f"MLP 784-{HIDDEN}-{LATENT}, Bernoulli, Adam {LR}, fp32, {args.reps} repetitions, "
          f"threads {args.threads or info['torch_threads']}")
    samples: dict[str, dict[str, list[float]]] = {}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        samples[str(bs)] = {n: [] for n in names}
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]  # rotate who goes first
            for name in order:
                rate = measure(pythons[name], name, bs, args.n_train, args.threads)
                samples[str(bs)][name].append(rate)
                print(f"  batch {bs} rep {rep + 1}: {name:11s} {rate:9.0f} samples/s", flush=True)

    rows, results = [], {}
    for bs, by_name in samples.items():
        results[bs] = {n: stats(v) for n, v in by_name.items()}
        for other in ("reference", "pythae"):
            if other in by_name and "vaelab" in by_name:
                paired = [a / b for a, b in zip(by_name["vaelab"], by_name[other], strict=True)]
                results[bs][f"ratio_vaelab_{other}"] = {
                    "of_medians": results[bs]["vaelab"]["median"] / results[bs][other]["median"],
                    "paired": stats(paired)}
        for n in names:
            s = results[bs][n]
            ratio = (f"{s['median'] / results[bs]['reference']['median']:.2f}"
                     if "reference" in results[bs] else "-")
            rows.append([bs, n, f"{s['median']:.0f}", f"{s['min']:.0f}-{s['max']:.0f}",
                         f"+-{100 * s['spread']:.0f}%", ratio])
    print()
    print(table(["batch", "loop", "samples/s (median)", "min-max", "spread", "x reference"], rows))
    for bs in results:
        for other in ("reference", "pythae"):
            r = results[bs].get(f"ratio_vaelab_{other}")
            if r:
                print(f"batch {bs}: vaelab / {other} = {r['of_medians']:.2f} (ratio of medians), "
                      f"{r['paired']['median']:.2f} (median of paired repetitions)")
    for note in notes:
        print("note:", note)
    out = write_json({"benchmark": "train_throughput", "machine": info, "data": data_name,
                      "n_train": args.n_train, "reps": args.reps,
                      "threads": args.threads or info["torch_threads"], "notes": notes,
                      "pythae_python": pythons.get("pythae"), "results": results},
                     args.out, "train_throughput")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
