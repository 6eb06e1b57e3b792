"""Arguments and helpers that several commands share."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.errors import VaelabError


def add_run_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="a run folder written by `vaelab train`")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda | mps (default: cpu)")


def load_model(args: argparse.Namespace) -> tuple[Any, int | None]:
    """The model of args.run on args.device and its step (for the figures' records); says on
    stderr when the run is unfinished."""
    from vaelab.runfolder import load, model_state

    model = load(args.run, device=args.device)
    state = model_state(args.run)
    if note := state.note(args.run):
        print(note, file=sys.stderr)
    return model, state.step


def load_run(args: argparse.Namespace) -> tuple[Any, Any, int | None]:
    """`load_model`, and the run's data; an M1+M2 run seen through M1, on its images
    (vaelab.workflows.stacked)."""
    from vaelab.data import load_data
    from vaelab.runfolder import read_config
    from vaelab.workflows.stacked import as_images

    model, step = load_model(args)
    model, data = as_images(model, load_data(read_config(args.run).data))
    return model, data, step


def get_split(data: Any, name: str) -> Any:
    split = getattr(data, name)
    if split is None:
        raise VaelabError(f"--split {name}: this run has no {name} split")
    return split


def add_output_arguments(parser: argparse.ArgumentParser, default_name: str) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write the PNG (default: RUN/{default_name})")
    parser.add_argument("--save-array", action="store_true",
                        help="also write the images as a .npy array beside the PNG")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def output_path(args: argparse.Namespace, default_name: str) -> Path:
    path = args.out if args.out is not None else args.run / default_name
    if path.suffix.lower() != ".png":
        raise VaelabError(f"--out {path}: expected a .png file name")
    if not path.parent.exists():
        raise VaelabError(f"--out {path}: folder {path.parent} does not exist")
    return path


def save_array(path: Path, array: np.ndarray) -> Path:
    from vaelab.runfolder import atomic_write

    target = path.with_suffix(".npy")
    atomic_write(target, lambda tmp: np.save(open(tmp, "wb"), array))
    return target


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
