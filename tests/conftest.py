"""Shared fixtures: a tiny trained run on digits (made once per session), the shared datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import vaelab
from vaelab.config import Config, DataConfig, ModelConfig, TrainConfig

# Tiny models gain nothing from intra-op threads, and several test processes (DDP, kill tests)
# share two cores: one thread each keeps them from oversubscribing the machine.
torch.set_num_threads(1)


def tiny_config(**train: object) -> Config:
    return Config(
        data=DataConfig(name="digits"),
        model=ModelConfig(latent_dim=4, hidden=[32]),
        train=TrainConfig(**({"epochs": 2, "batch_size": 64, "log_every": 5} | train)),
    )


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder trained for a few epochs on digits; read-only for the tests that use it."""
    run = tmp_path_factory.mktemp("runs") / "digits"
    vaelab.train(tiny_config(epochs=5), run, device="cpu", progress=False)
    return run


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets (or $VAELAB_TEST_DATASETS); tests that need it skip when absent."""
    default = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    path = Path(os.environ.get("VAELAB_TEST_DATASETS", default))
    if not (path / "mnist").is_dir():
        pytest.skip(f"shared datasets not found at {path}")
    return path
