"""One self-contained HTML page about a run: config, curves, metrics and every figure.

Images are embedded as base64 PNG, so the page can be mailed or attached as a single file. The
figures and evaluation-test.json come from the run folder when they were made from the current
weights (vaelab.runfolder records the model step in each); anything missing or stale is made
first, by the same functions as the CLI commands, and kept in the run folder.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from vaelab import runfolder
from vaelab.config import Config
from vaelab.data import Data, load_data
from vaelab.evaluation import classification_error, evaluate_run, format_rows
from vaelab.models import M2, VAE
from vaelab.workflows import figures
from vaelab.workflows.run import training_figures

INTERPOLATION = "slerp"  # the report's interpolation method, named in its caption
TRAINING_FIGURES = ["samples.png", "reconstructions.png", "curves.png", "latent.png"]


def _interpolations(model: VAE, data: Data) -> Figure:
    pairs = min(4, len(data.test) // 2)
    starts, ends = [str(2 * i) for i in range(pairs)], [str(2 * i + 1) for i in range(pairs)]
    return figures.interpolations(model, data.test, starts, ends, method=INTERPOLATION,
                                  classes=data.classes)[0]


SECTIONS = [  # (title, file, what the reader sees, how it is made if missing or stale)
    ("Training curves", "curves.png", "ELBO and KL per epoch, on training and validation data.",
     None),
    ("Samples", "samples.png", "z ~ p(z) decoded to the mean of p(x|z).", None),
    ("Reconstructions", "reconstructions.png", "Test images over their decoded posterior means.",
     None),
    ("Interpolations", "interpolate.png",
     "Spherical (slerp, White 2016) paths between the codes of pairs of test images.",
     _interpolations),
    ("Traversals", "traverse.png", "One latent dimension at a time (largest KL first).",
     lambda model, data: figures.traversals(model, data.test)[0]),
    ("Latent map", "latent-map.png", "Test codes coloured by class.",
     lambda model, data: figures.latent_map(model, data)[0]),
]


def _confusion(model: VAE, data: Data) -> Figure:
    assert isinstance(model, M2)  # M2_SECTIONS are made for M2 runs only
    return figures.confusion(classification_error(model, data.test)[2].numpy(), data.classes)


M2_SECTIONS = [  # what an M2 run (Kingma et al. 2014) adds
    ("Classification", "confusion.png",
     "The classifier q(y|x) on the test set: true classes (rows) against its most probable "
     "class (columns).", _confusion),
    ("Analogies", "analogies.png",
     "Kingma et al. (2014), fig. 1: each row a test image, then its style z = E_q[z|x,y] "
     "decoded as every class.",
     lambda model, data: figures.analogies(model, data.test, classes=data.classes)[0]),
]


def sections(m2: bool) -> list[tuple[str, str, str, Any]]:
    """The report's sections: SECTIONS, and M2_SECTIONS for an M2 run."""
    return SECTIONS + (M2_SECTIONS if m2 else [])


def write_report(run: str | Path, out: str | Path | None = None, *, k: int = 100,
                 device: str = "cpu") -> Path:
    """Writes run/report.html (or `out`) and returns its path.

    Args:
        run: a run folder written by `vaelab train`.
        out: the HTML file to write (default run/report.html).
        k: importance samples for log p(x) when evaluation-test.json is missing or stale.
        device: where the model runs while missing figures are made.
    """
    run = Path(run)
    config = runfolder.read_config(run)
    model = runfolder.load(run, device=device)
    state = runfolder.model_state(run)
    data = load_data(config.data)
    make_missing(run, model, data, state)
    metrics = evaluation(run, model, config, data, k, state)
    page = render(run, config, metrics, state)
    path = Path(out) if out is not None else run / "report.html"
    runfolder.atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path


def make_missing(run: Path, model: VAE, data: Data, state: runfolder.ModelState) -> list[str]:
    """Makes the figures the report shows that are missing or stale; returns their names."""
    made = []
    if not all(runfolder.is_current(run / name, state) for name in TRAINING_FIGURES):
        training_figures(run, model, data)
        made += TRAINING_FIGURES
    for _, name, _, make in sections(isinstance(model, M2)):
        if make is not None and not runfolder.is_current(run / name, state):
            figures.save(make(model, data), run / name, state.step)
            made.append(name)
    return made


def evaluation(run: Path, model: VAE, config: Config, data: Data, k: int,
               state: runfolder.ModelState) -> dict[str, Any]:
    """evaluation-test.json of the run, computed (with k importance samples) if it is missing,
    was made from other weights or covers part of the test set (`evaluate --limit`)."""
    path = run / "evaluation-test.json"
    if runfolder.is_current(path, state):
        saved = json.loads(path.read_text())
        if saved.get("n") == len(data.test):
            return saved
    result = evaluate_run(model, config, data, "test", k=k)
    result |= {"protocol": "quick", "model_step": state.step}
    runfolder.write_json(path, result)
    return result


def render(run: Path, config: Config, metrics: dict[str, Any],
           state: runfolder.ModelState) -> str:
    """The HTML page, with the run folder's PNGs embedded."""
    note = state.note(run)
    parts = [f"<h1>vaelab run <code>{html.escape(run.name)}</code></h1>",
             f"<p>{html.escape(_summary(config, state))}</p>",
             f'<p class="note">{html.escape(note)}</p>' if note else "",
             "<h2>Evaluation (test set)</h2>", _metrics_table(metrics)]
    for title, name, caption, _ in sections(config.model.family == "m2"):
        parts.append(f"<h2>{title}</h2><p>{caption}</p>")
        if (run / name).is_file():
            data = base64.b64encode((run / name).read_bytes()).decode("ascii")
            parts.append(f'<img alt="{title}" src="data:image/png;base64,{data}">')
        else:
            parts.append("<p><em>not available</em></p>")
    parts += ["<h2>Configuration</h2>",
              f"<pre>{html.escape(json.dumps(config.to_dict(), indent=2))}</pre>"]
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "img{max-width:100%}table{border-collapse:collapse}.note{color:#a40}"
             "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
             "pre{background:#f4f4f4;padding:1em;overflow:auto}")
    step = "" if state.step is None else (
        f'<meta name="{runfolder.STEP_KEY}" content="{state.step}">')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{step}'
            f"<title>vaelab report: {html.escape(run.name)}</title><style>{style}</style></head>"
            f"<body>\n" + "\n".join(p for p in parts if p) + "\n</body></html>\n")


def _summary(config: Config, state: runfolder.ModelState) -> str:
    m, o, t = config.model, config.objective, config.train
    trained = "" if state.epoch is None else f" (weights of epoch {state.epoch}, step {state.step})"
    family = (f"M2 (semi-supervised, {config.data.labels or 'all'} training labels)"
              if m.family == "m2" else "VAE")
    return (f"{config.data.name}: {m.arch} {family}, latent {m.latent_dim}, hidden {m.hidden}, "
            f"{m.likelihood} likelihood; objective {o.name}; {t.epochs} epochs{trained}, "
            f"batch {t.batch_size}, lr {t.lr}, seed {t.seed}.")


def _metrics_table(result: dict[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
                    for name, value in format_rows(result))
    return f"<table>{cells}</table>"
