"""vaelab train: train a VAE and write a run folder."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from vaelab import config as names  # the names of every choice
from vaelab.cli.common import int_list, positive_int
from vaelab.errors import VaelabError

NAME = "train"
HELP = "train a VAE on a named dataset, an array file or an image folder"
EXAMPLE = "vaelab train --data digits    # offline, under a minute on 2 CPU cores"

# CLI flag -> (config section, key); None values mean "not given"
FLAGS = {
    "data": ("data", "name"), "data_dir": ("data", "data_dir"), "binarize": ("data", "binarize"),
    "image_shape": ("data", "image_shape"), "labels": ("data", "labels"),
    "features": ("data", "features"),
    "family": ("model", "family"), "alpha": ("objective", "alpha"),
    "valid_fraction": ("data", "valid_fraction"),
    "arch": ("model", "arch"), "latent_dim": ("model", "latent_dim"), "hidden": ("model", "hidden"),
    "activation": ("model", "activation"), "likelihood": ("model", "likelihood"),
    "obs_scale": ("model", "obs_scale"), "channels": ("model", "channels"),
    "objective": ("objective", "name"), "beta": ("objective", "beta"),
    "samples": ("objective", "num_samples"), "warmup": ("objective", "warmup"),
    "warmup_epochs": ("objective", "warmup_epochs"), "cycle_ratio": ("objective", "cycle_ratio"),
    "free_bits": ("objective", "free_bits"), "capacity": ("objective", "capacity"),
    "capacity_epochs": ("objective", "capacity_epochs"), "gamma": ("objective", "gamma"),
    "epochs": ("train", "epochs"), "batch_size": ("train", "batch_size"), "lr": ("train", "lr"),
    "lr_schedule": ("train", "lr_schedule"), "lr_final": ("train", "lr_final"),
    "lr_decay_epochs": ("train", "lr_decay_epochs"), "precision": ("train", "precision"),
    "seed": ("train", "seed"), "checkpoint_every": ("train", "checkpoint_every"),
    "grad_clip": ("train", "grad_clip"), "checkpoint_minutes": ("train", "checkpoint_minutes"),
    "max_bad_steps": ("train", "max_bad_steps"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--data", help="dataset name (digits, mnist, fashion-mnist, frey-faces, "
                   "binarized-mnist), a .npy/.npz file or an image folder (default: digits)")
    d.add_argument("--data-dir", help="folder holding dataset files (else $VAELAB_DATA, the cache, "
                   "system locations, then download)")
    d.add_argument("--binarize", choices=names.BINARIZE,
                   help="dynamic: resample binary pixels every batch (test set binarized once)")
    d.add_argument("--valid-fraction", type=float, help="share of train held out (default 0.1)")
    d.add_argument("--labels", type=positive_int, metavar="N",
                   help="M2: keep N training labels, balanced over classes, drawn with --seed "
                   "(saved in RUN/labels.json); training never sees the others")
    d.add_argument("--features", metavar="RUN",
                   help="M1+M2: train on the codes q(z1|x) of the VAE trained in RUN (its own "
                   "dataset and splits; a fresh z1 each batch, the mean for validation/test); "
                   "written once to RUN/codes.safetensors")
    d.add_argument("--image-shape", type=int_list, metavar="H,W",
                   help="the image shape (H,W or C,H,W) of flat vectors, e.g. 28,20: figures and "
                   "masks then use it, and --arch conv works")
    m = p.add_argument_group(
        "model", "Settings left out take the dataset's defaults, then vaelab's generic ones "
        "(`vaelab datasets` lists both); a --config file's values and flags override them.")
    m.add_argument("--family", choices=names.FAMILIES,
                   help="vae (default) | m2: semi-supervised, the class y a partly observed "
                   "latent (Kingma et al. 2014); with --labels N")
    m.add_argument("--arch", choices=names.ARCHS)
    m.add_argument("--latent-dim", type=positive_int, help="size of z")
    m.add_argument("--hidden", type=int_list, help="hidden layer sizes, e.g. 400,400")
    m.add_argument("--activation", choices=names.ACTIVATIONS)
    m.add_argument("--likelihood", help=" | ".join(names.LIKELIHOOD_NAMES))
    m.add_argument("--obs-scale", type=float, help="std. dev. of the fixed Gaussian likelihood")
    m.add_argument("--channels", type=int_list, help="conv widths, one per halving, e.g. 32,64")
    m.add_argument("--conditional", action="store_true",
                   help="a conditional VAE: one-hot class labels join the encoder input and z")
    o = p.add_argument_group("objective")
    o.add_argument("--objective", choices=names.OBJECTIVE_NAMES,
                   help="elbo (default) | iwae | ae (plain autoencoder) | kl-only")
    o.add_argument("--beta", type=float, help="KL weight (beta-VAE), default 1; < 1 allowed")
    o.add_argument("--samples", type=positive_int, help="latent samples per input (IWAE k)")
    o.add_argument("--warmup", choices=names.WARMUPS,
                   help="KL weight schedule from 0 to beta (default none)")
    o.add_argument("--warmup-epochs", type=float,
                   help="linear: epochs to reach beta; cyclical: epochs per cycle (default 10)")
    o.add_argument("--cycle-ratio", type=float,
                   help="cyclical: share of each cycle spent rising (default 0.5)")
    o.add_argument("--free-bits", type=float, help="KL floor per latent dimension, nats (0: off)")
    o.add_argument("--capacity", type=float,
                   help="capacity-controlled beta-VAE (Burgess et al. 2018): target KL C in "
                   "nats, reached after --capacity-epochs (0: off); --gamma weighs |KL - C|")
    o.add_argument("--capacity-epochs", type=float, help="epochs for the capacity to rise")
    o.add_argument("--alpha", type=float, help="M2: weight of -log q(y|x) on each labelled "
                   "example (default N / N_labelled, 10x the paper's alpha = 0.1 N)")
    o.add_argument("--gamma", type=float,
                   help="capacity control: the weight of |KL - C| (default 1000, as Burgess et al.)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=positive_int)
    t.add_argument("--batch-size", type=positive_int)
    t.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    t.add_argument("--lr-schedule", choices=names.LR_SCHEDULES,
                   help="constant (default) | cosine: decay from --lr to --lr-final over --epochs")
    t.add_argument("--lr-final", type=float, help="cosine: learning rate at the end (default 0)")
    t.add_argument("--lr-decay-epochs", type=float,
                   help="cosine: epochs to decay over, then hold --lr-final (default: --epochs)")
    t.add_argument("--precision", choices=names.PRECISIONS,
                   help="fp32 (default) | bf16: the networks' matrix products in bfloat16 "
                   "(faster on CPUs with AMX/AVX-512 BF16 and recent GPUs); losses stay fp32")
    t.add_argument("--seed", type=int)
    t.add_argument("--checkpoint-every", type=int, help="also checkpoint every N steps")
    t.add_argument("--checkpoint-minutes", type=float, help="also checkpoint every M minutes")
    t.add_argument("--grad-clip", type=float, help="clip the gradient norm (0: off)")
    t.add_argument("--max-bad-steps", type=positive_int,
                   help="non-finite steps in a row before training stops (default 20)")
    t.add_argument("--config", type=Path, help="a TOML or JSON file of settings (flags win)")
    r = p.add_argument_group("run folder")
    r.add_argument("--name", help="run name (default: the dataset's name, numbered if taken)")
    r.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: ./runs")
    r.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its checkpoint")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | mps (default: auto)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


def cli_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "objective": {}, "train": {}}
    for flag, (section, key) in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            out[section][key] = value
    return out


def build_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """Config from the --config file < flags; unset settings take the dataset's defaults
    when training starts (vaelab.config.apply_defaults; `vaelab datasets` lists them)."""
    from vaelab.config import Config, DataConfig, load_config_file
    from vaelab.data import load_data
    from vaelab.training import encode_run

    file = load_config_file(args.config) if args.config else {}
    flags = cli_overrides(args)
    data_cfg = Config.from_dict(_merge({"data": file.get("data", {})},
                                       {"data": flags["data"]}), "options").data
    if data_cfg.features:  # M1+M2: the codes of a VAE run, of its own dataset by default
        given = "name" in flags["data"] or "name" in file.get("data", {})
        data_cfg.name = data_cfg.name if given else _features_dataset(data_cfg.features)
        flags["data"]["name"] = data_cfg.name
        encode_run(data_cfg.features)
    data = load_data(data_cfg if data_cfg.name else DataConfig())
    merged = _merge(file, flags)
    model, objective = merged.get("model"), merged.get("objective", {})
    m2 = isinstance(model, dict) and model.get("family") == "m2"
    if m2 and isinstance(objective, dict) and "name" not in objective:  # M2's own objective
        merged = _merge(merged, {"objective": {"name": "m2"}})
    if args.conditional:
        merged = _merge(merged, {"model": {"cond_dim": _num_classes(data)}})
    source = str(args.config) if args.config else "options"
    return Config.from_dict(merged, source), data


def _features_dataset(run: str) -> str:
    """The dataset the VAE run `run` (--features) was trained on."""
    from vaelab.runfolder import CONFIG, read_config

    if not (Path(run) / CONFIG).is_file():
        raise VaelabError(f"--features {run}: not a run folder (no {CONFIG}); train a VAE "
                          f"there first, e.g. vaelab train --data mnist --name m1")
    return read_config(run).data.name


def _num_classes(data: Any) -> int:
    """The size of the one-hot condition of a conditional VAE on `data`."""
    if data.train.y is None:
        raise VaelabError(f"--conditional needs class labels, and {data.name} has none")
    return len(data.classes) if data.classes else int(data.train.y.max()) + 1


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = out[key] | value
        elif isinstance(value, dict) and key in out:
            continue  # `model = 3` in a file: keep it, so that Config.from_dict reports it
        else:
            out[key] = value
    return out


def execute(args: argparse.Namespace) -> int:
    from vaelab.distributed import is_main_process
    from vaelab.runfolder import read_config
    from vaelab.workflows import train

    if args.resume is not None:
        changed = [f for f, v in cli_overrides(args).items() if v and f != "train"]
        extra = {k for k in cli_overrides(args)["train"] if k != "epochs"}
        if changed or extra or args.config or args.conditional or args.overwrite or args.name:
            raise VaelabError("--resume continues a run with its own settings; only --epochs "
                              "may be given with it")
        config = read_config(args.resume)
        if args.epochs is not None:
            config = config.updated({"train": {"epochs": args.epochs}})
        run, data = args.resume, None
    else:
        config, data = build_config(args)
        run = args.runs_dir / run_name(args.name) if args.name else _free_name(args.runs_dir,
                                                                              data.name)
    result = train(config, run, data=data, resume=args.resume is not None,
                   overwrite=args.overwrite, device=args.device, progress=not args.quiet)
    if is_main_process():  # under torchrun, rank 0 reports
        print(summary(result))
    return 0


def run_name(name: str) -> str:
    """--name is a folder name inside --runs-dir, not a path."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith("."):
        raise VaelabError(f"--name {name!r}: a run name is one folder name (letters, digits, "
                          f"'-', '_'), not a path; use --runs-dir to choose where runs go")
    return name


def _free_name(runs_dir: Path, name: str) -> Path:
    name = Path(name).stem if ("/" in name or "." in name) else name
    path, i = runs_dir / name, 1
    while path.exists() and any(path.iterdir()):
        i += 1
        path = runs_dir / f"{name}-{i}"
    return path


def summary(result: Any) -> str:
    last = result.history[-1] if result.history else {}
    lines = [f"trained {result.data.name} for {last.get('epoch', 0)} epochs "
             f"({result.config.model.arch}, latent {result.config.model.latent_dim}, "
             f"{result.config.model.likelihood}) in {result.seconds:.1f} s",
             f"run folder: {result.run}"]
    if "valid_elbo" in last:
        lines.append(f"validation ELBO: {last['valid_elbo']:.3f} nats "
                     f"(KL {last['valid_kl']:.3f})")
    elif "valid_reconstruction" in last:  # a plain autoencoder has no ELBO
        lines.append(f"validation reconstruction log p(x|z): {last['valid_reconstruction']:.3f} "
                     f"nats")
    if last.get("skipped_steps"):
        lines.append(f"skipped {last['skipped_steps']} steps with a non-finite loss or gradient")
    run = shlex.quote(str(result.run))
    lines.append(f"next: vaelab evaluate {run}  |  vaelab sample {run}")
    return "\n".join(lines)
