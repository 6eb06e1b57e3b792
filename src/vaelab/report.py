"""One self-contained HTML page about a run: config, curves, metrics and every figure.

Images are embedded as base64 PNG, so the page can be mailed or attached as a single file.
Figures missing from the run folder (and evaluation-test.json) are made first and kept there.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vaelab import plots
from vaelab.config import Config
from vaelab.data import Data
from vaelab.models import VAE

TRAINING_FIGURES = ["samples.png", "reconstructions.png", "curves.png", "latent.png"]
SECTIONS = [  # (title, file, what the reader sees)
    ("Training curves", "curves.png", "ELBO and KL per epoch, on training and validation data."),
    ("Samples", "samples.png", "z ~ p(z) decoded to the mean of p(x|z)."),
    ("Reconstructions", "reconstructions.png", "Test images and the decoded posterior means."),
    ("Interpolations", "interpolate.png", "Linear paths between the codes of test images."),
    ("Traversals", "traverse.png", "One latent dimension at a time (largest KL first)."),
    ("Latent map", "latent-map.png", "Test codes coloured by class."),
]


def write_report(run: str | Path, out: str | Path | None = None, *, k: int = 100,
                 device: str = "cpu") -> Path:
    """Writes run/report.html (or `out`) and returns its path.

    Args:
        run: a run folder written by `vaelab train`.
        out: the HTML file to write (default run/report.html).
        k: importance samples for log p(x) if evaluation-test.json has to be computed.
        device: where the model runs while missing figures are made.
    """
    from vaelab.data import load_data
    from vaelab.runfolder import atomic_write, load, read_config

    run = Path(run)
    config = read_config(run)
    model = load(run, device=device)
    data = load_data(config.data)
    make_missing(run, model, config, data)
    metrics = evaluation(run, model, config, data, k)
    page = render(run, config, metrics)
    path = Path(out) if out is not None else run / "report.html"
    atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def make_missing(run: Path, model: VAE, config: Config, data: Data) -> list[str]:
    """Makes the figures the report shows that the run folder lacks; returns their names."""
    from vaelab.runfolder import read_metrics
    from vaelab.training import TrainResult

    made = []
    if any(not (run / name).is_file() for name in TRAINING_FIGURES):
        history = [r for r in read_metrics(run) if r.get("split") == "epoch"]
        plots.training_figures(TrainResult(run, model, config, data, history, 0.0))
        made += TRAINING_FIGURES
    makers: dict[str, Callable[[VAE, Data], Any]] = {
        "interpolate.png": _interpolations, "traverse.png": _traversals,
        "latent-map.png": _latent_map}
    for name, make in makers.items():
        if not (run / name).is_file():
            plots.save_figure(make(model, data), run / name)
            made.append(name)
    return made


def evaluation(run: Path, model: VAE, config: Config, data: Data, k: int) -> dict[str, Any]:
    """evaluation-test.json of the run, computed (with k importance samples) if missing."""
    from vaelab.evaluation import evaluate
    from vaelab.runfolder import write_json

    path = run / "evaluation-test.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = evaluate(model, data.test, k=k, cond_dim=config.model.cond_dim)
    result |= {"split": "test", "dataset": data.name, "protocol": "quick"}
    write_json(path, result)
    return result


def render(run: Path, config: Config, metrics: dict[str, Any]) -> str:
    """The HTML page, with the run folder's PNGs embedded."""
    parts = [f"<h1>vaelab run <code>{html.escape(run.name)}</code></h1>",
             f"<p>{html.escape(_summary(config))}</p>",
             "<h2>Evaluation (test set)</h2>", _metrics_table(metrics)]
    for title, name, caption in SECTIONS:
        parts.append(f"<h2>{title}</h2><p>{caption}</p>")
        if (run / name).is_file():
            data = base64.b64encode((run / name).read_bytes()).decode("ascii")
            parts.append(f'<img alt="{title}" src="data:image/png;base64,{data}">')
        else:
            parts.append("<p><em>not available</em></p>")
    parts += ["<h2>Configuration</h2>",
              f"<pre>{html.escape(json.dumps(config.to_dict(), indent=2))}</pre>"]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "img{max-width:100%}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
             "pre{background:#f4f4f4;padding:1em;overflow:auto}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>vaelab report: {html.escape(run.name)}</title><style>{style}</style></head>"
            f"<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _summary(config: Config) -> str:
    m, o, t = config.model, config.objective, config.train
    return (f"{config.data.name}: {m.arch} VAE, latent {m.latent_dim}, hidden {m.hidden}, "
            f"{m.likelihood} likelihood; objective {o.name}; {t.epochs} epochs, "
            f"batch {t.batch_size}, lr {t.lr}, seed {t.seed}.")


def _metrics_table(result: dict[str, Any]) -> str:
    rows = [("examples", result.get("n")), ("ELBO (nats)", result.get("elbo")),
            ("E_q log p(x|z)", result.get("reconstruction")),
            ("KL(q(z|x) || p(z))", result.get("kl"))]
    if "log_likelihood" in result:
        rows += [(f"log p(x), importance sampled, k={result['k']}", result["log_likelihood"]),
                 ("bits/dim", result["bits_per_dim"])]
    rows.append(("active units", f"{result.get('active_units')} / {result.get('latent_dim')}"))
    if "kl_per_dim" in result:
        rows.append(("KL per dimension", " ".join(f"{v:.2f}" for v in result["kl_per_dim"])))
    cells = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(_fmt(v))}</td></tr>"
                    for name, v in rows)
    return f"<table>{cells}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _interpolations(model: VAE, data: Data) -> Any:
    from vaelab.exploration import interpolate

    pairs = min(4, len(data.test) // 2)
    test = data.test
    ya = test.y[0:2 * pairs:2] if model.cond_dim else None
    paths = interpolate(model, test.x[0:2 * pairs:2], test.x[1:2 * pairs:2], 10, "linear", ya)
    return plots.row_grid(plots.as_image_rows(paths, model.x_shape),
                          "linear interpolation between test images",
                          row_labels=[f"{2 * i} -> {2 * i + 1}" for i in range(pairs)],
                          col_labels=[f"{t:.2f}" for t in np.linspace(0, 1, 10)],
                          xlabel="t (0: reconstruction of A, 1: reconstruction of B)")


def _traversals(model: VAE, data: Data) -> Any:
    from vaelab.exploration import encode, kl_per_dimension, top_dims, traverse

    kl = kl_per_dimension(model, data.test)
    dims = top_dims(kl, min(8, model.latent_dim))
    values = np.linspace(-3, 3, 9).tolist()
    z0, y, start = None, None, "the prior mean z = 0"
    if model.cond_dim:  # a conditional model needs a label: start from test image 0
        y = data.test.y[:1]
        z0, start = encode(model, data.test.x[:1], y)[0], "test image 0"
    images = traverse(model, dims, values, z0, y)
    return plots.row_grid(plots.as_image_rows(images, model.x_shape),
                          f"latent traversals around {start}",
                          row_labels=[f"z[{d}] (KL {kl[d]:.2f})" for d in dims],
                          col_labels=[f"{v:+.1f}" for v in values],
                          xlabel="offset added to one dimension (others fixed)")


def _latent_map(model: VAE, data: Data) -> Any:
    from vaelab.exploration import latent_codes, manifold

    codes, (xname, yname, method) = latent_codes(model, data.test, 2000)
    labels = None if data.test.y is None else data.test.y[:len(codes)].numpy()
    images = grid = None
    if model.latent_dim == 2 and not model.cond_dim:
        images, grid = manifold(model)
        images = plots.as_image_rows(images, model.x_shape)
    return plots.latent_figure(codes, labels, f"{len(codes)} test codes E_q[z|x] ({method})",
                               (xname, yname), data.classes, images, grid)
