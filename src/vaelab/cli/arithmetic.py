"""vaelab arithmetic: add an attribute vector (mean code with minus without) to images' codes."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vaelab.cli.common import add_output_arguments, add_run_argument, output_path, positive_int
from vaelab.data import Split
from vaelab.errors import VaelabError

NAME = "arithmetic"
HELP = "latent arithmetic: add an attribute vector (from labels or a CSV) to codes and decode"
EXAMPLE = "vaelab arithmetic runs/digits --from-class 1 --to-class 7 --scale 1.5"
TRUE, FALSE = {"1", "1.0", "true", "yes"}, {"0", "0.0", "-1", "false", "no", ""}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_run_argument(p)
    p.add_argument("--attribute", help="a class label (e.g. 7) or a column of --attributes")
    p.add_argument("--attributes", type=Path, metavar="CSV",
                   help="attribute table: a header row, then file name + 0/1 columns per image "
                        "(paths relative to the CSV), as CelebA's list_attr")
    p.add_argument("--from-class", help="with --to-class: the vector from class a to class b")
    p.add_argument("--to-class")
    p.add_argument("--images", nargs="+", metavar="IMAGE",
                   help="images to edit: test indices or files (default: N without the attribute)")
    p.add_argument("-n", type=positive_int, default=6, help="images to edit by default (6)")
    p.add_argument("--scale", type=float, default=1.0, help="largest multiple of the vector (1)")
    p.add_argument("--steps", type=positive_int, default=5, help="scales from 0 to --scale (5)")
    add_output_arguments(p, "arithmetic.png")


def execute(args: argparse.Namespace) -> int:
    from vaelab.cli.common import load_run, save_array
    from vaelab.exploration import arithmetic, attribute_vector, encode_means, select_inputs
    from vaelab.plots import as_image_rows, row_grid
    from vaelab.workflows.figures import save

    path = output_path(args, "arithmetic.png")
    model, data, step = load_run(args)
    if args.attributes is not None:
        if args.attribute is None:
            raise VaelabError("--attributes needs --attribute COLUMN")
        files, has = _table(args.attributes, args.attribute)
        x = _read(files, model.x_shape)
        z = encode_means(model, Split(x))
        default = x[~torch.from_numpy(has)][: args.n]
        what = f"'{args.attribute}' (from {args.attributes.name})"
    else:
        train = data.train
        if train.y is None:
            raise VaelabError(f"{data.name} has no labels: give an --attributes CSV")
        labels = train.y.numpy()
        if args.from_class is not None or args.to_class is not None:
            if args.from_class is None or args.to_class is None or args.attribute:
                raise VaelabError("give --from-class and --to-class together, without --attribute")
            a, b = (_label(c, data.classes, labels) for c in (args.from_class, args.to_class))
            keep = np.isin(labels, [a, b])
            z, has = encode_means(model, train.subset(torch.from_numpy(keep))), labels[keep] == b
            default = data.test.x[data.test.y == a][: args.n]
            what = f"class {args.from_class} -> class {args.to_class}"
        elif args.attribute is not None:
            c = _label(args.attribute, data.classes, labels)
            z, has = encode_means(model, train), labels == c
            default = data.test.x[data.test.y != c][: args.n]
            what = f"class {args.attribute}"
        else:
            raise VaelabError("say which vector: --attribute NAME or --from-class A --to-class B")
    vector = attribute_vector(z, has)
    if args.images:
        x, y = select_inputs(args.images, data.test, model.x_shape, "--images")
    else:
        x, y = default, None
    scales = [args.scale * i / max(args.steps - 1, 1) for i in range(args.steps)]
    edited = arithmetic(model, x, vector, scales, y)  # (N, S, *x_shape)
    images = as_image_rows(np.concatenate([x.numpy()[:, None], edited], 1), model.x_shape)
    fig = row_grid(images, f"latent arithmetic: E_q[z|x] + s * v, v = attribute vector of {what}",
                   col_labels=["input", *(f"s={s:.2f}" for s in scales)],
                   xlabel=f"|v| = {np.linalg.norm(vector):.2f}; s = 0 is the reconstruction")
    save(fig, path, step)
    print(f"wrote {path}")
    if args.save_array:
        print(f"wrote {save_array(path, edited)}")
    return 0


def _label(name: str, classes: list[str] | None, labels: np.ndarray) -> int:
    """A class given by name (as in the dataset's class names) or by integer label."""
    if classes and name in classes:
        return classes.index(name)
    if name.lstrip("-").isdigit() and int(name) in set(labels.tolist()):
        return int(name)
    known = ", ".join(classes) if classes else ", ".join(map(str, sorted(set(labels.tolist()))))
    raise VaelabError(f"unknown attribute '{name}': the labels are {known} "
                      f"(or give an --attributes CSV)")


def _table(path: Path, column: str) -> tuple[list[Path], np.ndarray]:
    """(image paths, has (N,) bool) for one column of an attribute CSV."""
    if not path.is_file():
        raise VaelabError(f"--attributes {path}: no such file")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2 or len(rows[0]) < 2:
        raise VaelabError(f"--attributes {path}: expected a header row (file, attribute, ...) "
                          f"and one row per image")
    header = [h.strip() for h in rows[0]]
    if column not in header[1:]:
        raise VaelabError(f"unknown attribute '{column}': {path.name} has "
                          f"{', '.join(header[1:])}")
    j = header.index(column)
    files, has = [], []
    for line, row in enumerate(rows[1:], start=2):
        value = row[j].strip().lower() if j < len(row) else ""
        if value not in TRUE | FALSE:
            raise VaelabError(f"{path}:{line}: '{row[j]}' in column {column} is not 0/1")
        files.append(path.parent / row[0].strip())
        has.append(value in TRUE)
    return files, np.array(has)


def _read(files: list[Path], x_shape: list[int]) -> Tensor:
    from vaelab.exploration import read_images

    missing = [f for f in files if not f.is_file()]
    if missing:
        raise VaelabError(f"--attributes: image {missing[0]} not found ({len(missing)} missing)")
    return read_images(files, x_shape)
