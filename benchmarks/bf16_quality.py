"""bf16 autocast vs fp32: training speed and what it costs in ELBO and log-likelihood.

Trains one recipe twice in this process, `train.precision = "fp32"` then `"bf16"` (same data,
seed and noise), and scores both in fp32: seconds per epoch (median of epochs 2..E), the last
validation ELBO, and on the first --n test images the ELBO and the importance-sampled
log-likelihood (k samples).

    python benchmarks/bf16_quality.py                      # configs/mnist.toml, 10 epochs
    python benchmarks/bf16_quality.py --epochs 3 --n 500 --k 500   # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, describe, load_recipe_data, machine, table, write_json  # noqa: E402


def main() -> None:
    import vaelab
    from vaelab.config import Config, load_config_file
    from vaelab.data import Split
    from vaelab.evaluation import evaluate

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "mnist.toml")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n", type=int, default=2000, help="test images scored")
    p.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    p.add_argument("--out", help="JSON path (default benchmarks/results/bf16_quality.json)")
    args = p.parse_args()

    config = Config.from_dict(load_config_file(args.config), str(args.config))
    config = config.updated({"train": {"epochs": args.epochs}})
    data = load_recipe_data(config)
    test = Split(data.test.x[:args.n])
    info = machine()
    print(describe(info))
    print(f"recipe {args.config}, {args.epochs} epochs; test: {len(test)} images, k={args.k}")
    results, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            run = vaelab.train(config.updated({"train": {"precision": precision}}),
                               Path(tmp) / precision, data=data, progress=False, figures=False)
            score = evaluate(run.model, test, k=args.k, seed=0)
            seconds = statistics.median(r["seconds"] for r in run.history[1:] or run.history)
            results[precision] = {"seconds_per_epoch": seconds,
                                  "valid_elbo": run.history[-1].get("valid_elbo"),
                                  "test_elbo": score["elbo"],
                                  "test_log_likelihood": score["log_likelihood"],
                                  "test_log_likelihood_sem": score["log_likelihood_sem"]}
            r = results[precision]
            rows.append([precision, f"{seconds:.2f}", f"{r['valid_elbo']:.2f}",
                         f"{r['test_elbo']:.2f}",
                         f"{r['test_log_likelihood']:.2f} ± {r['test_log_likelihood_sem']:.2f}"])
            print(f"  {precision}: {seconds:.2f} s/epoch, test log p(x) "
                  f"{r['test_log_likelihood']:.2f}", flush=True)
    fp32, bf16 = results["fp32"], results["bf16"]
    speedup = fp32["seconds_per_epoch"] / bf16["seconds_per_epoch"]
    print()
    print(table(["precision", "s/epoch", "valid ELBO", "test ELBO", "test log p(x)"], rows))
    print(f"bf16 is {speedup:.2f}x the speed of fp32; test log p(x) differs by "
          f"{bf16['test_log_likelihood'] - fp32['test_log_likelihood']:+.2f} nats")
    out = write_json({"benchmark": "bf16_quality", "machine": info, "recipe": str(args.config),
                      "epochs": args.epochs, "n_test": len(test), "k": args.k,
                      "results": results, "speedup": speedup}, args.out, "bf16_quality")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
