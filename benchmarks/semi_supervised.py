"""Semi-supervised classification with few labels (Kingma, Rezende, Mohamed & Welling 2014):
test error against training minutes for M2, for M1 (a VAE) then M1+M2, and the baselines.

Per label draw (--seeds; the seed draws the N balanced labels and initialises the models):
  m2      M2 on the inputs (`vaelab train --family m2 --labels N`), for --minutes;
  m1m2    M2 on the codes of M1 (`--features RUN`), for the rest of the budget after M1, so
          both pipelines get the same total training time; its minutes include M1's;
  m1+logreg, m1+svm   the codes' posterior means, a classifier on the N labels alone;
  mlp     M2's q(y|x) network trained on the N labels alone (`vaelab baseline`).
M1, the VAE, is trained once (it sees no labels) for --m1-share of the budget. Training runs in
slices (`vaelab.training.fit` with resume, no validation: the minutes are training only) and
after each slice the classifier q(y|x) is scored on the whole test set. Each score is one JSON
line in --out; the PNG beside it draws error against minutes. --resume continues a stopped
benchmark from its run folders and JSON lines. The first lines measure M2's training speed
against a plain VAE of the same size on the same data (interleaved, --speed-reps times).

    python benchmarks/semi_supervised.py --minutes 60 --seeds 0,1,2      # MNIST, 100 labels
    python benchmarks/semi_supervised.py --jobs 2 ...   # M2 and M1+M2 side by side, a core each
    python benchmarks/semi_supervised.py --data digits --minutes 0.2     # tiny, offline
    python benchmarks/semi_supervised.py --resume    # continue; --plot only redraws the PNG

Kingma et al. (2014), Table 1, MNIST with 100 labels, test error (%): NN (labels only) 25.80,
M1+TSVM 11.82 (+- 0.25), M2 11.97 (+- 1.71), M1+M2 3.33 (+- 0.14); their models trained far
longer (up to 3000 epochs on a GPU), so a CPU budget of an hour is not expected to reach them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, describe, machine, mnist_dir, save_plot, table  # noqa: E402

# Kingma et al. (2014), Table 1, MNIST, N = 100 (their M1 row uses a transductive SVM)
PAPER = {"mlp": 25.80, "m1+svm": 11.82, "m2": 11.97, "m1m2": 3.33}
CURVES = ("m2", "m1m2")
BASELINES = ("m1+logreg", "m1+svm", "mlp")
LEGEND = {"m2": "M2", "m1m2": "M1+M2 (after M1's minutes)", "m1+logreg": "M1 codes + logreg",
          "m1+svm": "M1 codes + SVM", "mlp": "MLP on the labels alone"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist")
    p.add_argument("--data-dir", help="default: $VAELAB_DATA or ../shared/datasets for mnist")
    p.add_argument("--labels", type=int, default=100)
    p.add_argument("--minutes", type=float, default=60.0, help="training budget of each pipeline")
    p.add_argument("--m1-share", type=float, default=0.5,
                   help="share of the M1+M2 budget spent on M1 (default 0.5)")
    p.add_argument("--eval-every", type=float, help="minutes between scores (default "
                   "--minutes / 8), rounded to whole epochs")
    p.add_argument("--seeds", default="0", help="label draws, e.g. 0,1,2")
    p.add_argument("--latent-dim", type=int, help="z (and z1) size; default: the dataset's")
    p.add_argument("--hidden", help="hidden sizes, e.g. 500; default: the dataset's")
    p.add_argument("--m1-hidden", help="M1's hidden sizes (the paper's: 500,500); default: "
                   "--hidden")
    p.add_argument("--lr", type=float, help="M2's learning rate (M1 keeps vaelab's default)")
    p.add_argument("--m1m2-lr", type=float, help="the learning rate of M2 on M1's codes")
    p.add_argument("--mlp-steps", type=int, default=1000, help="Adam steps of the mlp baseline")
    p.add_argument("--speed-reps", type=int, default=3)
    p.add_argument("--speed-n", type=int, default=6400,
                   help="training examples of the speed epochs (default 6400: 50 batches)")
    p.add_argument("--runs", type=Path, default=Path("runs") / "semi-supervised")
    p.add_argument("--out", type=Path, help="JSON lines (default benchmarks/results/"
                   "semi_supervised.jsonl)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is fastest on a shared, loaded machine)")
    p.add_argument("--jobs", type=int, default=1, choices=(1, 2),
                   help="2: train the M2 and the M1+M2 pipelines side by side in two processes "
                   "of --threads each (they append to the same --out)")
    p.add_argument("--phase", choices=CURVES, help=argparse.SUPPRESS)  # one pipeline (--jobs)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--plot", action="store_true", help="only redraw the PNG of --out")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import torch

    from vaelab.training import flush_denormals

    args = parse(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with flush_denormals():  # as the vaelab command does; restored on the way out
            run(args, sys.argv[1:] if argv is None else argv)
    finally:
        torch.set_num_threads(threads)


def run(args: argparse.Namespace, argv: list[str]) -> None:
    out = args.out or RESULTS / "semi_supervised.jsonl"
    if args.plot:
        print(f"wrote {plot(out)}")
        return
    data = load(args)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.phase:  # one pipeline, started by --jobs 2
        pipelines(args, out, data, seeds, (args.phase,))
        return
    done = read(out) if args.resume else []
    if not args.resume:
        out.parent.mkdir(parents=True, exist_ok=True)
        header = {"benchmark": "semi_supervised", "machine": machine(), "argv": argv, "data": args.data,
                  "labels": args.labels, "minutes": args.minutes, "m1_share": args.m1_share,
                  "seeds": seeds, "jobs": args.jobs, "threads": args.threads, "paper": PAPER,
                  "n_test": len(data.test)}
        out.write_text(json.dumps(header) + "\n")
    print(describe(machine()))
    if not any("speed" in r for r in done):
        append(out, {"speed": speed(args, data)})
    if args.jobs == 1:
        pipelines(args, out, data, seeds, CURVES)
    else:
        side_by_side(argv, out)
    m1 = args.runs / "m1"
    for seed in seeds:
        for name in BASELINES:
            if not any(r.get("phase") == name and r.get("seed") == seed for r in read(out)):
                append(out, baseline_record(args, name, seed, data, m1))
    print(summary(read(out)))
    print(f"wrote {out} and {plot(out)}")


def pipelines(args: argparse.Namespace, out: Path, data: Any, seeds: list[int],
              phases: tuple[str, ...]) -> None:
    """The learning curves of `phases` (m2, m1m2) for every label draw; M1 first for m1m2."""
    if "m1m2" in phases:
        m1, m1_minutes = train_curve(args, out, "m1", 0, data, args.m1_share * args.minutes,
                                     offset=0.0, score=False)
    for seed in seeds:
        if "m2" in phases:
            train_curve(args, out, "m2", seed, data, args.minutes, offset=0.0)
        if "m1m2" in phases:
            train_curve(args, out, "m1m2", seed, codes_of(m1), args.minutes - m1_minutes,
                        offset=m1_minutes, features=m1)


def side_by_side(argv: list[str], out: Path) -> None:
    """--jobs 2: this script again for each pipeline, at once, resuming into the same --out."""
    import subprocess

    keep, i = [], 0
    while i < len(argv):  # drop --jobs N, --out F (the children get the resolved F), --resume
        if argv[i] in ("--jobs", "--out"):
            i += 2
            continue
        if not argv[i].startswith(("--jobs=", "--out=")) and argv[i] != "--resume":
            keep.append(argv[i])
        i += 1
    children = [subprocess.Popen([sys.executable, __file__, *keep, "--out", str(out),
                                  "--resume", "--phase", phase]) for phase in CURVES]
    codes = [child.wait() for child in children]
    if any(codes):
        raise SystemExit(f"a pipeline failed (exit codes {codes}); fix it and --resume")


def load(args: argparse.Namespace) -> Any:
    from vaelab.config import DataConfig
    from vaelab.data import load_data

    data_dir = args.data_dir
    if data_dir is None and args.data == "mnist" and mnist_dir() is not None:
        data_dir = str(mnist_dir())
    args.data_dir = data_dir
    return load_data(DataConfig(name=args.data, data_dir=data_dir))


def config(args: argparse.Namespace, seed: int, *, m2: bool, features: Path | None = None,
           epochs: int = 1) -> Any:
    """The Config of one model: M2 (with --labels) or the VAE M1; on M1's codes with features."""
    from vaelab.cli.common import int_list
    from vaelab.config import Config, DataConfig, ModelConfig, ObjectiveConfig, TrainConfig

    data = DataConfig(name=args.data, data_dir=args.data_dir, labels=args.labels if m2 else 0,
                      features=None if features is None else str(features))
    hidden = args.hidden if m2 else (args.m1_hidden or args.hidden)
    lr = args.lr if features is None else args.m1m2_lr
    model = ModelConfig(family="m2" if m2 else "vae", latent_dim=args.latent_dim,
                        hidden=int_list(hidden) if hidden else None)
    return Config(data=data, model=model, objective=ObjectiveConfig(name="m2" if m2 else "elbo"),
                  train=TrainConfig(epochs=epochs, seed=seed,
                                    **({"lr": lr} if m2 and lr else {})))


def codes_of(m1: Path) -> Any:
    from vaelab.workflows.baselines import codes

    return codes(m1)


def test_error(model: Any, split: Any) -> tuple[float, float]:
    """q(y|x)'s most probable class against the labels: the error and its s.e.m."""
    import torch

    from vaelab.workflows.baselines import error_rate

    device = next(model.parameters()).device
    with torch.no_grad():
        predicted = torch.cat([model.classify(x.to(device)).probs.argmax(-1).cpu()
                               for x in split.x.split(2048)])
    return error_rate(predicted, split.y)


def train_curve(args: argparse.Namespace, out: Path, phase: str, seed: int, data: Any,
                budget_minutes: float, *, offset: float, score: bool = True,
                features: Path | None = None) -> tuple[Path, float]:
    """Trains one model in slices for its budget, appending a scored record after each slice
    (`offset`: minutes already spent before it, M1's for M1+M2); resumes what --out recorded.
    Returns the run folder and the minutes it trained."""
    from vaelab.training import fit

    run = args.runs / (phase if phase == "m1" else f"{phase}-seed{seed}")
    mine = [r for r in read(out) if r.get("phase") == phase and r.get("seed") == seed]
    if any(r.get("done") for r in mine):
        return run, mine[-1]["own_minutes"]
    trained, epochs = resumed(mine, run) if mine else (0.0, 0)
    budget, epoch_seconds = 60 * budget_minutes, None
    every = 60 * (args.eval_every or args.minutes / 8)
    while trained < budget:
        left = (budget - trained) / epoch_seconds if epoch_seconds else 1
        if left < 0.5:  # less than half an epoch of budget left
            break
        slice_ = 1 if epoch_seconds is None else max(1, min(round(every / epoch_seconds),
                                                            int(left) or 1))
        cfg = config(args, seed, m2=phase != "m1", features=features, epochs=epochs + slice_)
        start = time.perf_counter()
        result = fit(cfg, run, data=data, resume=epochs > 0, overwrite=epochs == 0,
                     device=args.device, progress=False)
        seconds = time.perf_counter() - start
        trained, epochs, epoch_seconds = trained + seconds, epochs + slice_, seconds / slice_
        record = {"phase": phase, "seed": seed, "epoch": epochs,
                  "own_minutes": round(trained / 60, 4),
                  "train_minutes": round(offset + trained / 60, 4)}
        if score:
            error, sem = test_error(result.model, result.data.test)
            record |= {"test_error": round(100 * error, 3), "test_error_sem": round(100 * sem, 3)}
        append(out, record)
        print(f"  {phase:5s} seed {seed}  {record['train_minutes']:7.2f} min  epoch {epochs:4d}"
              + (f"  test error {record['test_error']:.2f}%" if score else ""), flush=True)
    append(out, {"phase": phase, "seed": seed, "done": True, "epochs": epochs,
                 "own_minutes": round(trained / 60, 4)})
    return run, trained / 60


def resumed(records: list[dict[str, Any]], run: Path) -> tuple[float, int]:
    """(training seconds, epochs) of a stopped model: its last record plus the seconds of the
    epochs its run folder logged after it (as time_to_quality.py resumes)."""
    from vaelab.runfolder import read_metrics

    last = records[-1]
    logged = [r for r in read_metrics(run) if r.get("split") == "epoch"]
    later = sum(r["seconds"] for r in logged if r["epoch"] > last["epoch"])
    return 60 * last["own_minutes"] + later, logged[-1]["epoch"] if logged else last["epoch"]


def baseline_record(args: argparse.Namespace, name: str, seed: int, data: Any,
                    m1: Path) -> dict[str, Any]:
    from vaelab.workflows.baselines import Options, baseline

    inputs = codes_of(m1) if name.startswith("m1+") else data
    hidden = [int(h) for h in args.hidden.split(",")] if args.hidden else None
    result = baseline(inputs, args.labels, method=name.removeprefix("m1+"),
                      options=Options(seed=seed, hidden=hidden, steps=args.mlp_steps))
    print(f"  {name:9s} seed {seed}  {result.line()}")
    return {"phase": name, "seed": seed, "test_error": round(100 * result.test_error, 3),
            "test_error_sem": round(100 * result.test_error_sem, 3), "inputs": result.inputs,
            "settings": result.settings}


def speed(args: argparse.Namespace, data: Any) -> dict[str, Any]:
    """Training examples/s of M2 and of a plain VAE of the same size on the same training
    examples (one epoch each, alternating, --speed-reps times; the epoch time the run logs,
    which leaves out checkpoints). An M2 step also carries a batch of labelled examples,
    scores every unlabelled example once per class and every labelled one at its class."""
    import dataclasses
    import tempfile

    from vaelab.training import fit

    data = dataclasses.replace(data, train=data.train.subset(slice(0, args.speed_n)))
    vae_s, m2_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        same = argparse.Namespace(**(vars(args) | {"m1_hidden": None}))  # M2's size for both
        for rep in range(args.speed_reps):
            for m2, times in ((False, vae_s), (True, m2_s)):
                run = Path(tmp) / f"{'m2' if m2 else 'vae'}-{rep}"
                result = fit(config(same, 0, m2=m2), run, data=data, device=args.device,
                             progress=False)
                times.append(result.history[-1]["seconds"])
        batch = result.config.train.batch_size or 1
        labelled = min(args.labels, batch)
        k = result.config.model.cond_dim
    n = len(data.train)
    vae, m2 = n / statistics.median(vae_s), n / statistics.median(m2_s)
    ratio = vae / m2
    per_row = ratio / ((batch * k + labelled) / batch)
    print(f"speed: plain VAE {vae:.0f} examples/s, M2 {m2:.0f} examples/s: an M2 step costs "
          f"{ratio:.1f}x a plain ELBO step; it scores B x K + B_labelled = {batch} x {k} + "
          f"{labelled} rows, so {per_row:.2f}x a VAE's time per row")
    return {"vae_examples_per_s": round(vae, 1), "m2_examples_per_s": round(m2, 1),
            "m2_step_cost": round(ratio, 2), "m2_cost_per_row": round(per_row, 3),
            "batch_size": batch, "labelled_batch": labelled, "classes": k,
            "vae_epoch_seconds": vae_s, "m2_epoch_seconds": m2_s, "n_train": n}


def read(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text().splitlines()] if out.is_file() else []


def append(out: Path, record: dict[str, Any]) -> None:
    with out.open("a") as f:
        f.write(json.dumps(record) + "\n")


def finals(records: list[dict[str, Any]], until: float | None = None) -> dict[str, list[dict[str, Any]]]:
    """The last score of every phase and seed (the last at or before `until` training minutes,
    if given), by phase; a learning curve only once it is done (not while --resume runs it)."""
    done = {(r["phase"], r["seed"]) for r in records if r.get("done")}
    last: dict[tuple[str, int], dict[str, Any]] = {}
    for r in records:
        if "test_error" in r and (until is None or r.get("train_minutes", 0) <= until) and \
                (r["phase"] not in CURVES or (r["phase"], r["seed"]) in done):
            last[(r["phase"], r["seed"])] = r
    by_phase: dict[str, list[dict[str, Any]]] = {}
    for (phase, _), r in sorted(last.items()):
        by_phase.setdefault(phase, []).append(r)
    return by_phase


def summary(records: list[dict[str, Any]], at: float = 45.0) -> str:
    """The table: test error per method, mean +- s.e.m. over label draws (or, for one draw,
    +- the s.e.m. over test examples), at the last score by `at` minutes and at the end."""
    header, rows = records[0], []
    paper = header.get("data") == "mnist" and header.get("labels") == 100
    by_phase, early = finals(records), finals(records, until=at)
    for phase in [p for p in (*CURVES, *BASELINES) if p in by_phase]:
        curve = phase in CURVES
        rows.append([phase, len(by_phase[phase]), mean_sem(early.get(phase, [])) if curve else "",
                     mean_sem(by_phase[phase]),
                     f"{statistics.mean(r['train_minutes'] for r in by_phase[phase]):.2f}"
                     if curve else "", PAPER.get(phase, "") if paper else ""])
    return table(["method", "draws", f"test error % by {at:g} min", "final test error %",
                  "final minutes", "paper %"], rows)


def mean_sem(rs: list[dict[str, Any]]) -> str:
    """'mean +- s.e.m.' of the test errors of several label draws (of one: its s.e.m. over the
    test examples); '' for none."""
    from vaelab.workflows.baselines import summarise

    if not rs:
        return ""
    errors = [r["test_error"] for r in rs]
    mean, sem = summarise(errors) if len(rs) > 1 else (errors[0], rs[0]["test_error_sem"])
    return f"{mean:.2f} +- {sem:.2f}"


def plot(out: Path) -> Path:
    """Test error against training minutes (M2, M1+M2 per draw), the baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read(out)
    header = records[0]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    seeds = sorted({r["seed"] for r in records if "test_error" in r})  # --resume may add some
    for i, phase in enumerate(CURVES):
        for seed in seeds:
            points = [r for r in records if r.get("phase") == phase and r.get("seed") == seed
                      and "test_error" in r]
            ax.plot([r["train_minutes"] for r in points], [r["test_error"] for r in points],
                    "o-", color=f"C{i}", ms=3,
                    label=LEGEND[phase] if seed == seeds[0] else None)
    for i, (phase, rs) in enumerate((p, v) for p, v in finals(records).items() if p in BASELINES):
        ax.axhline(statistics.mean(r["test_error"] for r in rs), color=f"C{i + 2}", ls="--",
                   label=f"{LEGEND[phase]} (final)")
    ax.set(xlabel="training minutes", ylabel="test error (%)", ylim=(0, None),
           title=f"{header['data']}, {header['labels']} labels")
    return save_plot(fig, out)


if __name__ == "__main__":
    main()
