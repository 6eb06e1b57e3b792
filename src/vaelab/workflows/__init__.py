"""Workflows: what a command does, composed from the layers below (DESIGN.md, "The layers").

`train` is fit + figures, `write_report` one HTML page about a run, `compare_latent` three
trainings and one figure. The CLI commands call these, and so can a script or a notebook.
"""

from __future__ import annotations

from vaelab.workflows.compare import compare_latent
from vaelab.workflows.report import write_report
from vaelab.workflows.run import train, training_figures

__all__ = ["compare_latent", "train", "training_figures", "write_report"]
