"""Time to sample 64 images from an MLP VAE: `model.sample(64)` (prior draws, decoded means).

    python benchmarks/sample_speed.py                  # the configs/mnist.toml architecture
    python benchmarks/sample_speed.py --run runs/mnist # a trained run folder

Without --run the model has the recipe's architecture (784-400-400-20, Bernoulli) and freshly
initialised weights: the time of a forward pass does not depend on the weights' values.
Target: < 10 ms (median).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, describe, machine, stats, table, write_json  # noqa: E402

TARGET_MS = 10.0


def build(run: Path | None, recipe: Path) -> tuple[torch.nn.Module, str]:
    import vaelab
    from vaelab.config import Config, load_config_file
    from vaelab.models import build_model

    if run is not None:
        return vaelab.load(run), str(run)
    config = Config.from_dict(load_config_file(recipe), str(recipe))
    config.model.x_shape = [1, 28, 28]
    return build_model(config.model).eval(), f"{recipe.name} architecture, initial weights"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, help="a trained run folder")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "mnist.toml")
    p.add_argument("--n", type=int, default=64, help="images per call")
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/sample_speed.json)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print(describe(info))
    model, what = build(args.run, args.config)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):  # warm-up: first-call allocations and kernel selection
        model.sample(args.n, generator=gen)
    ms = []
    for _ in range(args.reps):
        start = time.perf_counter()
        images = model.sample(args.n, generator=gen)
        ms.append(1000 * (time.perf_counter() - start))
    s = stats(ms)
    print(f"model: {what}; output {tuple(images.shape)}")
    print(table(["images", "median ms", "min ms", "max ms", "target"],
                [[args.n, f"{s['median']:.2f}", f"{s['min']:.2f}", f"{s['max']:.2f}",
                  f"< {TARGET_MS:g} ms: {'met' if s['median'] < TARGET_MS else 'MISSED'}"]]))
    s.pop("values")
    out = write_json({"benchmark": "sample_speed", "machine": info, "model": what,
                      "n": args.n, "reps": args.reps, "milliseconds": s,
                      "target_ms": TARGET_MS, "met": s["median"] < TARGET_MS},
                     args.out, "sample_speed")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
