"""Configuration: plain dataclasses, read from and written to JSON/TOML without eval or pickle.

A `Config` is everything needed to rebuild a model and repeat a training run; `train` writes it
to `config.json` in the run folder, and `vaelab.load` reads it back.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError

FORMAT_VERSION = 1


@dataclass
class DataConfig:
    name: str = "digits"  # a named dataset, or a path to a .npy/.npz file or an image folder
    data_dir: str | None = None  # where to look first for named datasets' files
    binarize: str = "none"  # none | dynamic (resample every batch) | threshold
    valid_fraction: float = 0.1  # held out from train for the per-epoch validation ELBO
    image_size: list[int] | None = None  # [H, W] to resize image folders to; None = first image's


@dataclass
class ModelConfig:
    arch: str = "mlp"  # mlp | conv
    latent_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    activation: str = "relu"  # relu | gelu | tanh | elu | softplus
    likelihood: str = "bernoulli"  # see vaelab.models.likelihoods.LIKELIHOODS
    obs_scale: float = 0.1  # the standard deviation of the fixed-variance Gaussian likelihood
    x_shape: list[int] = field(default_factory=list)  # (C, H, W) or (D,); filled from the data
    cond_dim: int = 0  # size of the label/attribute vector y of a conditional VAE; 0 = none
    channels: list[int] = field(default_factory=lambda: [32, 64])  # conv widths, one per /2 stage


@dataclass
class ObjectiveConfig:
    """How a forward pass is scored; see vaelab.objectives for the formulas and papers."""

    name: str = "elbo"  # elbo | iwae | ae (plain autoencoder) | kl-only
    beta: float = 1.0  # weight of the KL term (beta-VAE when != 1; the gamma of capacity control)
    num_samples: int = 1  # latent samples per input (k of the IWAE bound)
    warmup: str = "none"  # KL weight schedule: none | linear | cyclical
    warmup_epochs: float = 10.0  # linear: epochs from 0 to beta; cyclical: epochs per cycle
    cycle_ratio: float = 0.5  # cyclical: share of each cycle spent rising (R of Fu et al. 2019)
    free_bits: float = 0.0  # KL floor per latent dimension in nats (Kingma et al. 2016); 0 = off
    capacity: float = 0.0  # target KL C in nats (Burgess et al. 2018); 0 = off
    capacity_epochs: float = 10.0  # epochs over which C rises linearly from 0 to capacity


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"  # constant | cosine (from lr down to lr_final over the epochs)
    lr_final: float = 0.0  # the cosine schedule's learning rate at its end
    lr_decay_epochs: float = 0.0  # cosine: epochs from lr to lr_final (0: train.epochs)
    precision: str = "fp32"  # fp32 | bf16: the nets' matmuls in bfloat16 (autocast), the rest fp32
    seed: int = 0
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at the end of each epoch only)
    log_every: int = 50  # steps between metrics.jsonl lines
    grad_clip: float = 0.0  # max gradient norm; 0 disables clipping
    checkpoint_minutes: float = 0.0  # also checkpoint every M minutes (0: off)
    max_bad_steps: int = 20  # non-finite steps in a row before training stops


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> Config:
        """Builds a Config, rejecting unknown keys and values of the wrong type by name."""
        if not isinstance(d, dict):
            raise VaelabError(f"{source}: expected a table of sections, got {type(d).__name__}")
        version = d.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise VaelabError(
                f"{source}: format_version {version} is not supported by this vaelab "
                f"(it reads version {FORMAT_VERSION}); retrain, or use a matching vaelab release"
            )
        sections = {f.name: f for f in dataclasses.fields(cls) if f.name != "format_version"}
        _reject_unknown(d, [*sections, "format_version"], source)
        kwargs = {}
        for name, f in sections.items():
            if name in d:
                kwargs[name] = _section(f.default_factory, d[name], f"{source}: [{name}]")
        config = cls(**kwargs)
        validate(config, source)
        return config

    def updated(self, overrides: dict[str, dict[str, Any]]) -> Config:
        """A copy with `{section: {key: value}}` applied; None values are skipped."""
        d = self.to_dict()
        for section, values in overrides.items():
            for key, value in values.items():
                if value is not None:
                    d[section][key] = value
        return Config.from_dict(d, "options")


def _reject_unknown(d: dict[str, Any], known: list[str], where: str) -> None:
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(known)}"
            raise VaelabError(f"{where}: unknown key {key!r}{hint}")


def _section(factory: Any, values: Any, where: str) -> Any:
    default = factory()
    if not isinstance(values, dict):
        raise VaelabError(f"{where}: expected a table of keys, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(default)}
    _reject_unknown(values, list(fields), where)
    kwargs = {}
    for key, value in values.items():
        kwargs[key] = _coerce(value, getattr(default, key), f"{where} {key}")
    return dataclasses.replace(default, **kwargs)


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Checks a value against the type of the field's default (None defaults accept anything)."""
    if default is None:  # optional fields: validate() checks them
        return value
    if value is None:
        raise VaelabError(f"{where}: expected {type(default).__name__}, got nothing (null)")
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not -1e300 < value < 1e300:  # NaN, inf, or an int too big for a float
            raise VaelabError(f"{where}: expected a finite number, got {value!r}")
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list | tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        value = list(value) if ok else value
    else:
        ok = True
    if not ok:
        raise VaelabError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


def validate(config: Config, source: str = "config") -> None:
    """Range checks that the types cannot express; one message per problem, naming the key."""
    from vaelab.models.likelihoods import LIKELIHOODS  # models import config, not the reverse
    from vaelab.objectives import OBJECTIVES

    m, o, t, d = config.model, config.objective, config.train, config.data
    checks = [
        (m.latent_dim >= 1, "model.latent_dim must be >= 1"),
        (all(h >= 1 for h in m.hidden), "model.hidden sizes must be >= 1"),
        (all(c >= 1 for c in m.channels) and len(m.channels) >= 1,
         "model.channels must be one or more sizes >= 1"),
        (m.arch in ("mlp", "conv"), f"model.arch must be mlp or conv, not '{m.arch}'"),
        (m.activation in ACTIVATIONS,
         f"model.activation must be one of {', '.join(ACTIVATIONS)}, not '{m.activation}'"),
        (m.likelihood in LIKELIHOODS,
         f"model.likelihood must be one of {', '.join(LIKELIHOODS)}, not '{m.likelihood}'"),
        (m.obs_scale > 0, "model.obs_scale must be > 0"),
        (m.cond_dim >= 0, "model.cond_dim must be >= 0"),
        (o.name in OBJECTIVES,
         f"objective.name must be one of {', '.join(OBJECTIVES)}, not '{o.name}'"),
        (o.beta >= 0, "objective.beta must be >= 0"),
        (o.num_samples >= 1, "objective.num_samples must be >= 1"),
        (o.warmup in WARMUPS,
         f"objective.warmup must be one of {', '.join(WARMUPS)}, not '{o.warmup}'"),
        (o.warmup_epochs > 0, "objective.warmup_epochs must be > 0"),
        (0 < o.cycle_ratio <= 1, "objective.cycle_ratio must be in (0, 1]"),
        (o.free_bits >= 0, "objective.free_bits must be >= 0"),
        (o.capacity >= 0, "objective.capacity must be >= 0"),
        (o.capacity_epochs > 0, "objective.capacity_epochs must be > 0"),
        (o.name == "elbo" or not (o.warmup != "none" or o.free_bits or o.capacity or o.beta != 1),
         f"objective.beta, warmup, free_bits and capacity shape the ELBO; the '{o.name}' "
         f"objective does not use them (use objective.name elbo)"),
        (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
        (t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}"),
        (t.lr > 0, f"train.lr must be > 0, got {t.lr}"),
        (t.lr_schedule in LR_SCHEDULES, f"train.lr_schedule must be one of "
         f"{', '.join(LR_SCHEDULES)}, not '{t.lr_schedule}'"),
        (0 <= t.lr_final <= t.lr, f"train.lr_final must be in [0, train.lr], got {t.lr_final}"),
        (t.lr_decay_epochs >= 0, "train.lr_decay_epochs must be >= 0"),
        (t.precision in PRECISIONS,
         f"train.precision must be one of {', '.join(PRECISIONS)}, not '{t.precision}'"),
        (t.checkpoint_every >= 0, "train.checkpoint_every must be >= 0"),
        (t.log_every >= 1, "train.log_every must be >= 1"),
        (t.grad_clip >= 0, "train.grad_clip must be >= 0"),
        (t.checkpoint_minutes >= 0, "train.checkpoint_minutes must be >= 0"),
        (t.max_bad_steps >= 1, f"train.max_bad_steps must be >= 1, got {t.max_bad_steps}"),
        (d.data_dir is None or isinstance(d.data_dir, str), "data.data_dir must be a path"),
        (d.image_size is None or _is_size(d.image_size),
         "data.image_size must be [height, width], two numbers >= 1"),
        (d.binarize in ("none", "dynamic", "threshold"),
         f"data.binarize must be none, dynamic or threshold, not '{d.binarize}'"),
        (0 <= d.valid_fraction < 1, "data.valid_fraction must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise VaelabError(f"{source}: {message}")


def _is_size(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))


ACTIVATIONS = ("relu", "gelu", "tanh", "elu", "softplus")
WARMUPS = ("none", "linear", "cyclical")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Reads a TOML or JSON config file into a plain dict (no code is executed)."""
    import json

    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"config file not found: {path}")
    try:
        text = path.read_text()
        d = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VaelabError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'}: {e}") from None
    if not isinstance(d, dict):
        raise VaelabError(f"{path}: expected a table of sections, got {type(d).__name__}")
    return d
