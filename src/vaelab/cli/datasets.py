"""vaelab datasets: the named datasets, what they hold, and the settings each trains with."""

from __future__ import annotations

import argparse
import json

NAME = "datasets"
HELP = "list the named datasets and the default model/training settings of each"
EXAMPLE = "vaelab datasets   |   vaelab datasets --json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the table as JSON")


def execute(args: argparse.Namespace) -> int:
    from vaelab.config import GENERIC_DEFAULTS
    from vaelab.data.named import dataset_table

    table = dataset_table()
    if args.json:
        print(json.dumps({"datasets": [_as_dict(info) for info in table],
                          "generic_defaults": GENERIC_DEFAULTS}, indent=2))
        return 0
    for info in table:
        shape = "x".join(map(str, info.x_shape))
        splits = " / ".join(f"{n} {split}" for split, n in info.splits.items())
        values = "binary 0/1" if info.value_range == "binary" else (
            f"{info.levels} grey levels in [0, 1]" if info.levels else "grey levels in [0, 1]")
        labels = f"{len(info.classes)} classes" if info.classes else "no labels"
        print(f"{info.name:<16} {shape:<8} {splits}; {values}; {labels}")
        print(f"{'':<16} {info.description}")
        print(f"{'':<16} defaults: {_settings(info.defaults)}")
    print("\nYour files and folders: likelihood=bernoulli for values in [0, 1], "
          "gaussian-global otherwise (see README, Data).")
    print(f"Any setting a dataset leaves unset: {_settings(GENERIC_DEFAULTS)}.")
    print("A dataset without a valid split holds out --valid-fraction (0.1) of train. "
          "Flags and --config files override every default.")
    return 0


def _settings(defaults: dict[str, dict[str, object]]) -> str:
    return ", ".join(f"{key}={value}" for section in defaults.values()
                     for key, value in section.items())


def _as_dict(info: object) -> dict[str, object]:
    keys = ("name", "description", "x_shape", "splits", "value_range", "levels", "classes",
            "defaults")
    return {key: getattr(info, key) for key in keys}
