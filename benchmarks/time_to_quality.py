"""Time to quality: test NLL (importance-sampled, nats) against training wall time.

Trains a named recipe in slices (`vaelab.train` with resume, so the run is one exact run) and
after each slice scores the first --n test images with the IWAE paper's protocol (Burda et al.
2016, section 5: k=5000 samples per image, the test set binarized once, which is what
load_data(binarize="dynamic") does); the last model is scored on the whole test set. Each
evaluation appends one JSON line to --out, so a curve of nats against minutes can be drawn from
it; the minutes are training wall time (the train calls, checkpoints included), not counting
the evaluations themselves.

    python benchmarks/time_to_quality.py --config configs/mnist-long.toml --minutes 120
    python benchmarks/time_to_quality.py --minutes 2 --eval-every 1 --n 500 --k 500 \
        --final-n 500  # a smoke run

Target on 2 CPU cores: test NLL <= 86.76 nats (the IWAE paper's one-layer VAE, 3,280 epochs)
within 120 minutes; the last line says what was reached.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, ROOT, describe, load_recipe_data, machine, save_plot, table  # noqa: E402

TARGET_NLL = 86.76  # Burda et al. (2016), Table 1: VAE, one stochastic layer, k=1


def main() -> None:
    import torch

    import vaelab
    from vaelab.config import Config, load_config_file
    from vaelab.data import Split
    from vaelab.evaluation import evaluate

    torch.set_flush_denormal(True)  # before any torch work, as the vaelab command does

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "mnist-long.toml")
    p.add_argument("--minutes", type=float, default=120.0, help="training time budget")
    p.add_argument("--eval-every", type=float, default=10.0, help="minutes of training between "
                   "evaluations (rounded to whole epochs)")
    p.add_argument("--k", type=int, default=5000, help="importance samples per test image")
    p.add_argument("--n", type=int, default=1000, help="test images scored along the way")
    p.add_argument("--final-n", type=int, default=0, help="test images scored at the end (0: all)")
    p.add_argument("--run", type=Path, default=Path("runs") / "time-to-quality",
                   help="the run folder (replaced)")
    p.add_argument("--device", default="auto")
    p.add_argument("--plot", action="store_true", help="only draw the curve of --out as a PNG")
    p.add_argument("--resume", action="store_true", help="continue a stopped run: its run "
                   "folder's checkpoint, and the training minutes already recorded in --out")
    p.add_argument("--out", type=Path, help="JSON lines (default benchmarks/results/"
                   "time_to_quality.jsonl)")
    args = p.parse_args()

    out = args.out or RESULTS / "time_to_quality.jsonl"
    if args.plot:
        print(f"wrote {plot_curve(out)}")
        return
    config = Config.from_dict(load_config_file(args.config), str(args.config))
    data = load_recipe_data(config)
    test = Split(data.test.x[:args.n])
    final_test = data.test if not args.final_n else Split(data.test.x[:args.final_n])
    out.parent.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(describe(info))
    print(f"recipe {args.config}: budget {args.minutes:g} min of training, test NLL with "
          f"k={args.k} on {len(test)} test images every ~{args.eval_every:g} min and on "
          f"{len(final_test)} at the end")
    header = {"benchmark": "time_to_quality", "machine": info, "recipe": str(args.config),
              "config": config.to_dict(), "k": args.k, "n_test": len(test),
              "n_test_final": len(final_test),
              "budget_minutes": args.minutes, "target_nll": TARGET_NLL}
    budget, trained, epochs, epoch_seconds = 60 * args.minutes, 0.0, 0, None
    if args.resume:
        trained, epochs = resumed_from(out, args.run)
        print(f"resuming at epoch {epochs} after {trained / 60:.2f} min of training")
    else:
        out.write_text(json.dumps(header) + "\n")
    rows = []
    wall_start = time.perf_counter()
    while trained < budget and epochs < config.train.epochs:
        if epoch_seconds is None:
            slice_ = 1  # the first slice measures how long an epoch takes
        else:
            left = (budget - trained) / epoch_seconds
            slice_ = max(1, min(round(60 * args.eval_every / epoch_seconds), int(left) or 1))
        slice_ = min(slice_, config.train.epochs - epochs)
        start = time.perf_counter()
        # the slices stop early; the learning-rate schedule still follows the whole recipe
        sliced = {"epochs": epochs + slice_,
                  "lr_decay_epochs": config.train.lr_decay_epochs or config.train.epochs}
        result = vaelab.train(config.updated({"train": sliced}), args.run,
                              data=data, resume=epochs > 0 or args.resume, overwrite=epochs == 0,
                              device=args.device, progress=False, figures=False)
        seconds = time.perf_counter() - start
        trained, epochs = trained + seconds, epochs + slice_
        epoch_seconds = seconds / slice_
        start = time.perf_counter()
        score = evaluate(result.model, test, k=args.k, seed=0)
        record = {"n_test": len(test), "train_minutes": round(trained / 60, 3), "epoch": epochs,
                  "step": result.history[-1]["step"], "test_nll": round(score["nll"], 4),
                  "test_nll_stderr": round(score["log_likelihood_sem"], 4),
                  "test_elbo": round(score["elbo"], 4), "active_units": score["active_units"],
                  "eval_seconds": round(time.perf_counter() - start, 1),
                  "wall_minutes": round((time.perf_counter() - wall_start) / 60, 3)}
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        rows.append([f"{record['train_minutes']:.2f}", epochs, f"{record['test_nll']:.2f}",
                     f"{record['test_elbo']:.2f}", f"{record['eval_seconds']:.0f}"])
        print(f"  {record['train_minutes']:7.2f} min  epoch {epochs:5d}  test NLL "
              f"{record['test_nll']:.2f} nats (ELBO {record['test_elbo']:.2f})", flush=True)

    print()
    print(table(["train minutes", "epoch", f"NLL ({len(test)} images)", "test ELBO", "eval s"],
                rows))
    start = time.perf_counter()
    score = evaluate(result.model, final_test, k=args.k, seed=0)
    nll = score["nll"]
    reached = "reached" if nll <= TARGET_NLL else "did not reach"
    summary = {"summary": True, "test_nll": round(nll, 4),
               "test_nll_stderr": round(score["log_likelihood_sem"], 4),
               "test_elbo": round(score["elbo"], 4), "n_test": len(final_test), "k": args.k,
               "target_nll": TARGET_NLL, "reached": nll <= TARGET_NLL,
               "train_minutes": round(trained / 60, 3), "epochs": epochs,
               "eval_seconds": round(time.perf_counter() - start, 1),
               "full_protocol": args.k == 5000 and len(final_test) == 10000}
    with out.open("a") as f:
        f.write(json.dumps(summary) + "\n")
    print(f"test NLL {nll:.2f} ± {score['log_likelihood_sem']:.2f} nats on "
          f"{len(final_test)} test images (k={args.k}) after {trained / 60:.1f} min of training "
          f"and {epochs} epochs: {reached} the target {TARGET_NLL}")
    print(f"wrote {out} and {plot_curve(out)}")


def plot_curve(out: Path) -> Path:
    """Test NLL against training minutes, from the JSON lines in `out`: a PNG beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in out.read_text().splitlines()]
    header = records[0]
    points = [r for r in records if "test_nll" in r and not r.get("summary")]
    final = [r for r in records if r.get("summary")]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot([r["train_minutes"] for r in points], [r["test_nll"] for r in points], "o-",
            label=f"first {header['n_test']} test images, k={header['k']}")
    for r in final:
        ax.errorbar([r["train_minutes"]], [r["test_nll"]], yerr=[r["test_nll_stderr"]], fmt="s",
                    color="C3", label=f"all {r['n_test']} test images, k={r['k']}")
    ax.axhline(header["target_nll"], color="grey", ls="--",
               label=f"target {header['target_nll']} (IWAE paper, one-layer VAE)")
    ax.set(xlabel="training minutes", ylabel="test NLL (nats)",
           title=f"{Path(header['recipe']).name} on {header['machine']['cores']} CPU cores")
    low = min([r["test_nll"] for r in points + final] + [header["target_nll"]])
    ax.set_ylim(low - 1, low + 12)
    return save_plot(fig, out)


def resumed_from(out: Path, run: Path) -> tuple[float, int]:
    """(training seconds, whole epochs) of a stopped run: the minutes of its last evaluation in
    `out` plus the seconds of the epochs the run folder logged after it. Appends a note."""
    from vaelab.runfolder import read_metrics

    records = [json.loads(line) for line in out.read_text().splitlines()]
    last = [r for r in records if "train_minutes" in r and not r.get("summary")][-1]
    logged = [r for r in read_metrics(run) if r.get("split") == "epoch"]
    later = [r["seconds"] for r in logged if r["epoch"] > last["epoch"]]
    trained, epochs = 60 * last["train_minutes"] + sum(later), logged[-1]["epoch"]
    with out.open("a") as f:
        f.write(json.dumps({"resumed": True, "epoch": epochs,
                            "train_minutes": round(trained / 60, 3)}) + "\n")
    return trained, epochs


if __name__ == "__main__":
    main()
