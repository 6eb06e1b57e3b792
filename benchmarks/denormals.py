"""Why vaelab flushes denormal floats to zero: one training epoch of a long run, with and without.

A long run makes denormal floats (below 1.2e-38), on which x86 arithmetic takes a slow path:
decoder logits below -87 (exp underflows in the likelihood and its gradient) and the decaying
Adam moments of weights whose gradients stop. This resumes a trained run folder (a copy of it)
for one epoch in fresh processes, alternating: "off" as torch does by default, "on" as
`vaelab.train` and the `vaelab` command do (vaelab.training.flush_denormals), and reports the
epoch's seconds and the share of denormal Adam moments in the checkpoint.

    python benchmarks/time_to_quality.py ...          # makes runs/time-to-quality
    python benchmarks/denormals.py --run runs/time-to-quality
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe, load_recipe_data, machine, stats, table, write_json  # noqa: E402


def worker(run: Path, flush: bool) -> dict[str, float]:
    from vaelab import training
    from vaelab.config import Config

    # on: as the vaelab command, from before any torch work, so torch's threads copy it;
    # off: torch's default, and train without its own flush_denormals decorator
    with training.flush_denormals() if flush else contextlib.nullcontext():
        train = training.fit if flush else training.fit.__wrapped__
        config = Config.from_dict(json.loads((run / "config.json").read_text()))
        epochs = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] + 1
        data = load_recipe_data(config)
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "run"
            shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.lock", "*.png"))
            result = train(config.updated({"train": {"epochs": epochs}}), copy, data=data,
                           resume=True, progress=False)
    return {"seconds": result.history[-1]["seconds"]}


def denormal_share(run: Path) -> float:
    tiny = torch.finfo(torch.float32).tiny
    state = torch.load(run / "checkpoint.pt", weights_only=True)["optimizer"]["state"]
    moments = [s[k].abs() for s in state.values() for k in ("exp_avg", "exp_avg_sq")]
    return sum(((m > 0) & (m < tiny)).sum().item() for m in moments) / sum(
        m.numel() for m in moments)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("runs") / "time-to-quality",
                   help="a run folder trained for long")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", help="JSON path (default benchmarks/results/denormals.json)")
    p.add_argument("--worker", choices=["off", "on"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.run, args.worker == "on")))
        return
    info = machine()
    print(describe(info))
    share = denormal_share(args.run)
    print(f"{args.run}: {share:.1%} of the Adam moments in its checkpoint are denormal")
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    for rep in range(args.reps):
        for mode in ("off", "on") if rep % 2 == 0 else ("on", "off"):
            done = subprocess.run([sys.executable, __file__, "--worker", mode, "--run",
                                   str(args.run)], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{mode} worker failed:\n{done.stderr[-3000:]}")
            seconds[mode].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
            print(f"  rep {rep + 1}: flush {mode:3s} {seconds[mode][-1]:6.1f} s/epoch", flush=True)
    results = {mode: stats(v) for mode, v in seconds.items()}
    speedup = results["off"]["median"] / results["on"]["median"]
    print()
    print(table(["denormals flushed", "s/epoch (median)", "min-max"],
                [[mode, f"{r['median']:.1f}", f"{r['min']:.1f}-{r['max']:.1f}"]
                 for mode, r in results.items()]))
    print(f"flushing denormals makes this epoch {speedup:.2f}x as fast")
    out = write_json({"benchmark": "denormals", "machine": info, "run": str(args.run),
                      "denormal_moment_share": share, "results": results, "speedup": speedup},
                     args.out, "denormals")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
