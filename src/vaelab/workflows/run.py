"""`vaelab.train`: fit a model (vaelab.training), then draw the run folder's figures."""

from __future__ import annotations

import functools
from pathlib import Path

from vaelab import plots, runfolder
from vaelab.config import Config
from vaelab.data import Data
from vaelab.evaluation import elbo_metrics
from vaelab.models import VAE
from vaelab.objectives import OBJECTIVES
from vaelab.training import TrainResult, fit
from vaelab.workflows import figures
from vaelab.workflows.stacked import as_images

VALIDATION_SEED = 999  # validation noise has its own seed, apart from the training noise


def train(config: Config, run: str | Path, *, data: Data | None = None, resume: bool = False,
          overwrite: bool = False, device: str = "auto", progress: bool = True,
          figures: bool = True) -> TrainResult:
    """Trains a VAE as `config` says, writes the run folder `run` and its figures.

    Args:
        config: the configuration; unset settings take the dataset's defaults (`vaelab
            datasets` lists them). The caller's object is not changed.
        run: the run folder to create, or to continue with resume=True.
        data: already-loaded data (else config.data is loaded).
        resume: continue from run/checkpoint.pt (config.train.epochs may be raised).
        overwrite: replace a run folder that already holds a different run.
        device: auto | cpu | cuda | mps.
        progress: show a tqdm progress bar.
        figures: write samples/reconstructions/curves/latent PNGs at the end.
    """
    validate = functools.partial(elbo_metrics, seed=VALIDATION_SEED,
                                 cond_dim=config.model.cond_dim, objective=config.objective.name)
    result = fit(config, run, data=data, resume=resume, overwrite=overwrite, device=device,
                 progress=progress, validate=validate)
    from vaelab.distributed import is_main_process

    if figures and is_main_process():
        training_figures(result.run, result.model, result.data)
    return result


def training_figures(run: Path, model: VAE, data: Data) -> None:
    """samples.png, reconstructions.png, curves.png and latent.png in the run folder, each
    recording the model step it shows (an M1+M2 run's through M1: images, not codes)."""
    step = runfolder.model_state(run).step
    model, data = as_images(model, data)
    if model.cond_dim:  # one row per class, a column per z: class apart from style
        fig, _, _ = figures.samples(model, 10, labels=list(range(model.cond_dim)))
    else:
        fig, _, _ = figures.samples(model, 64)
    figures.save(fig, run / "samples.png", step)
    fig, _ = figures.reconstructions(model, data.test, 32)
    figures.save(fig, run / "reconstructions.png", step)
    records = runfolder.read_metrics(run)
    objective = runfolder.read_config(run).objective
    bound = OBJECTIVES[objective.name].bound
    label = f"IWAE bound (k={objective.num_samples})" if bound == "iwae_bound" else None
    fig = plots.curves([r for r in records if r.get("split") == "epoch"],
                       [r for r in records if r.get("split") == "train"], bound, label)
    figures.save(fig, run / "curves.png", step)
    fig, _, _ = figures.latent_map(model, data, method="auto", grid=15)
    figures.save(fig, run / "latent.png", step)
