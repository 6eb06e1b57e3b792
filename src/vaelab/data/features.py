"""The codes of a trained VAE as a dataset: M1+M2 of Kingma, Rezende, Mohamed & Welling (2014),
"Semi-Supervised Learning with Deep Generative Models", section 3.1.3: a VAE (M1) is trained on
x first, and M2 is then trained on its latent codes z1 ~ q(z1|x) instead of x.

`RUN/codes.safetensors` holds, for every split of the run's own data (as its config loads them),
the mean and standard deviation of q(z1|x) and the labels. It records the model step it was
computed from and the dataset's name. `vaelab.training.encode_run` writes it (the data layer
loads no models); `load_codes` reads it as a `Codes` dataset whose x is the posterior mean of
every split, and training draws a fresh z1 = loc + scale * eps for each training batch
(`sample_codes`), as the paper does. Validation and test use the mean. Under dynamic
binarization the training split is encoded from its grey levels (the mean binary image).
Only the active dimensions of z1 are kept, those whose posterior mean varies across the
training examples (variance > 0.01, the paper's std > 0.1 and Burda et al.'s active units):
an inactive one is prior noise that would only blur M2's classifier. (If none is, all are
kept, with a warning.)
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import Tensor

from vaelab.config import DataConfig
from vaelab.data.splits import Data, Split
from vaelab.errors import VaelabError, VaelabWarning

CODES = "codes.safetensors"  # in the VAE's run folder
WEIGHTS = "model.safetensors"  # vaelab.runfolder.WEIGHTS: the step the codes must match
SPLITS = ("train", "valid", "test")
# What M2 on codes defaults to: a Gaussian with a learned variance per dimension, as the
# paper's p(z1|y,z2); an MLP, whatever the VAE's architecture (codes are flat vectors).
CODE_MODEL_DEFAULTS: dict[str, Any] = {"arch": "mlp", "likelihood": "gaussian-learned"}
ACTIVE = 0.01  # a dimension whose posterior mean varies more than this over x is kept

Encode = Callable[[Tensor], tuple[Tensor, Tensor]]  # x (B, *x_shape) -> loc, scale (B, D)


@dataclass
class Codes(Data):
    """A `Data` of codes: each split's x (N, D) is the mean of q(z1|x); `scale` (N_train, D)
    holds the training split's standard deviations, row for row, for `sample_codes`."""

    scale: Tensor | None = None
    run: str = ""  # the VAE's run folder
    step: int | None = None  # the VAE's model step the codes were computed from
    dims: list[int] | None = None  # the active dimensions of z1 kept, of the VAE's latent_dim


def encode_split(split: Split, encode: Encode, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
    """loc and scale (N, D) of q(z1|x) for every x of `split`, `batch_size` at a time."""
    parts = [encode(split.x[i:i + batch_size]) for i in range(0, len(split), batch_size)]
    loc = torch.cat([p[0] for p in parts]).float().cpu().contiguous()
    return loc, torch.cat([p[1] for p in parts]).float().cpu().contiguous()


def codes_bytes(data: Data, encode: Encode, *, step: int | None, dataset: str) -> bytes:
    """The contents of RUN/codes.safetensors: loc, scale and labels of every split of `data`,
    with the model step and the dataset's name (as the VAE's config names it)."""
    tensors: dict[str, Tensor] = {}
    for name in SPLITS:
        split: Split | None = getattr(data, name)
        if split is None:
            continue
        tensors[f"{name}.loc"], tensors[f"{name}.scale"] = encode_split(split, encode)
        if split.y is not None:
            tensors[f"{name}.y"] = split.y.contiguous()
    defaults = copy.deepcopy(data.defaults)
    model = {k: v for k, v in defaults.get("model", {}).items()
             if k not in ("likelihood", "obs_scale", "channels")}
    defaults["model"] = model | CODE_MODEL_DEFAULTS
    metadata = {"model_step": str(step), "dataset": dataset, "classes": json.dumps(data.classes),
                "defaults": json.dumps(defaults)}
    return safetensors_bytes(tensors, metadata=metadata)


def codes_step(run: str | Path) -> str | None:
    """The model step RUN/codes.safetensors was computed from (None: no readable file)."""
    return _metadata(Path(run) / CODES).get("model_step")


def weights_step(run: str | Path) -> str:
    """The step RUN/model.safetensors was saved at, as the codes record it ("None": unknown)."""
    return str(_metadata(Path(run) / WEIGHTS).get("step"))


def _metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError):
        return {}


def load_codes(config: DataConfig) -> Codes:
    """The codes of the VAE run `config.features` as a dataset (see the module's docstring).

    Raises VaelabError when the run folder or its codes are missing, when the codes are from
    older weights, or when the run was trained on another dataset than `config.name`.
    """
    run = Path(config.features or "")
    path = run / CODES
    if not (run / "config.json").is_file():
        raise VaelabError(f"data.features {run}: not a run folder (no config.json); train a "
                          f"VAE there first, e.g. vaelab train --data mnist --name m1")
    if codes_step(run) is None:
        raise VaelabError(f"data.features {run}: no codes yet ({path} is missing); "
                          f"vaelab train --features {run} writes them")
    metadata = _metadata(path)
    dataset = metadata["dataset"]
    if dataset != config.name:
        raise VaelabError(f"data.features {run}: that run was trained on {dataset}, not "
                          f"{config.name}; pass --data {dataset} (or leave --data out)")
    if metadata["model_step"] != weights_step(run):
        raise VaelabError(f"data.features {run}: {CODES} is from model step "
                          f"{metadata['model_step']}, but the weights are now at step "
                          f"{weights_step(run)}; train M2 again to re-encode (vaelab train "
                          f"--features {run} ...)")
    try:
        t = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise VaelabError(f"{path}: unreadable codes ({e})") from None
    active = t["train.loc"].var(0) > ACTIVE  # (D,)
    if not active.any():
        warnings.warn(f"data.features {run}: no dimension of z1 is active (the posterior mean "
                      f"hardly varies with x: the VAE collapsed to its prior), so all are kept; "
                      f"train it longer or with KL warm-up (--warmup)", VaelabWarning,
                      stacklevel=2)
        active[:] = True
    splits = {name: Split(t[f"{name}.loc"][:, active], t.get(f"{name}.y")) for name in SPLITS
              if f"{name}.loc" in t}
    return Codes(name=f"{dataset}-codes", train=splits["train"], test=splits["test"],
                 valid=splits.get("valid"), value_range="real",
                 classes=json.loads(metadata["classes"]),
                 defaults=json.loads(metadata["defaults"]), levels=None,
                 scale=t["train.scale"][:, active], run=str(run),
                 step=int(metadata["model_step"]), dims=active.nonzero()[:, 0].tolist())


def sample_codes(loc: Tensor, data: Data, idx: Tensor,
                 generator: torch.Generator | None = None) -> Tensor:
    """z1 = loc + scale * eps, eps ~ N(0, I): a fresh sample of q(z1|x) for the training
    examples `idx` (B,) whose means are `loc` (B, D), drawn with `generator` on loc's device
    (Kingma et al. 2014, section 3.1.3: M2 is trained on samples of q(z1|x))."""
    if not isinstance(data, Codes) or data.scale is None:
        raise ValueError("sample_codes needs the Codes of a run (vaelab.data.features)")
    scale = data.scale[idx].to(loc.device, non_blocking=True)
    return loc + scale * torch.randn(loc.shape, generator=generator, device=loc.device,
                                     dtype=loc.dtype)
