"""Does a conditional VAE on MNIST draw the class it is asked for?

Trains a CVAE (`vaelab train --data mnist --conditional`), draws samples with
`vaelab sample RUN --label c` for every class c, and has a small classifier (an MLP trained here
on MNIST) label them. Target: >= 90 % of the samples of each requested class labelled as it;
the script exits 1 when the overall rate misses it.

    python benchmarks/family_cvae.py --epochs 20 --train-size 20000 --latent-dim 4
"""

from __future__ import annotations

import family_common as common
import numpy as np
import torch
from torch import nn

from vaelab.cli import main as vaelab_main
from vaelab.config import Config, DataConfig, ModelConfig, TrainConfig
from vaelab.data import Data

TARGET = 0.90


def classifier(d: Data, epochs: int = 5) -> nn.Module:
    """A 784-256-10 MLP trained on all of MNIST train; prints its test accuracy."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = d.train.x, d.train.y
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = (net(d.test.x).argmax(1) == d.test.y).float().mean().item()
    print(f"classifier: MNIST test accuracy {acc:.2%}")
    return net.eval()


def main() -> int:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--train-size", type=int, default=20000, help="0: all 54000")
    p.add_argument("--latent-dim", type=int, default=4,
                   help="small: z keeps the style, y the class (a large z also encodes the class)")
    p.add_argument("-n", type=int, default=200, help="samples per class")
    args = p.parse_args()
    runs, results = common.setup(args, "cvae")
    d = common.data("mnist", args.data_dir, train_size=args.train_size)
    print(f"MNIST (grey, Bernoulli likelihood): {len(d.train)} train examples, {args.epochs} epochs")
    config = Config(data=DataConfig(name="mnist"),
                    model=ModelConfig(hidden=[400, 400], latent_dim=args.latent_dim, cond_dim=10),
                    train=TrainConfig(epochs=args.epochs, batch_size=100, seed=args.seed))
    run = runs / "cvae"
    result = common.train(config, run, d, args.device)
    print(f"  validation ELBO {result.history[-1]['valid_elbo']:.2f} nats")
    net = classifier(common.data("mnist", args.data_dir))
    rates = {}
    for c in range(10):
        out = run / f"label{c}.png"
        assert vaelab_main(["sample", str(run), "--label", str(c), "-n", str(args.n), "--out",
                            str(out), "--save-array", "--seed", str(args.seed)]) == 0
        images = torch.from_numpy(np.load(out.with_suffix(".npy")))
        with torch.no_grad():
            rates[c] = (net(images).argmax(1) == c).float().mean().item()
    assert vaelab_main(["sample", str(run), "--label", "all", "--out",
                        str(results / "label_all.png")]) == 0
    overall = sum(rates.values()) / len(rates)
    print("\nclass          " + " ".join(f"{c:>5}" for c in rates))
    print("labelled as c  " + " ".join(f"{r:>5.0%}" for r in rates.values()))
    print(f"overall: {overall:.1%} of {10 * args.n} samples labelled as the requested class "
          f"(target >= {TARGET:.0%}); worst class {min(rates, key=rates.get)} at {min(rates.values()):.0%}")
    common.keep(results, {"args": vars(args), "per_class": rates, "overall": overall,
                          "valid_elbo": result.history[-1]["valid_elbo"]})
    if overall < TARGET:
        print("FAILED: below target")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
