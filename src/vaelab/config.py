"""Configuration: plain dataclasses, read from and written to JSON/TOML without eval or pickle.

A `Config` is everything needed to rebuild a model and repeat a training run; `train` writes it
to `config.json` in the run folder, and `vaelab.load` reads it back.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError

FORMAT_VERSION = 1


# The names of every choice. The tables that implement them (vaelab.models.likelihoods,
# vaelab.objectives) have exactly these keys (tests/test_layers.py checks it).
ARCHS = ("mlp", "conv")
ACTIVATIONS = ("relu", "gelu", "tanh", "elu", "softplus")
LIKELIHOOD_NAMES = ("bernoulli", "continuous-bernoulli", "gaussian", "gaussian-learned",
                    "gaussian-global")
OBJECTIVE_NAMES = ("elbo", "iwae", "ae", "kl-only", "m2")
FAMILIES = ("vae", "m2")  # m2: the semi-supervised model of Kingma et al. (2014)
WARMUPS = ("none", "linear", "cyclical")
BINARIZE = ("none", "dynamic", "threshold")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("fp32", "bf16")

# What an unset (None) setting becomes when the dataset has no default of its own for it.
# Datasets' own defaults (`vaelab datasets` lists them) come first: see `apply_defaults`.
GENERIC_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"arch": "mlp", "latent_dim": 8, "hidden": [256, 256], "likelihood": "bernoulli",
              "obs_scale": 0.1},
    "train": {"epochs": 30, "batch_size": 128},
}


@dataclass
class DataConfig:
    name: str = "digits"  # a named dataset, or a path to a .npy/.npz file or an image folder
    data_dir: str | None = None  # where to look first for named datasets' files
    binarize: str = "none"  # none | dynamic (resample every batch) | threshold
    valid_fraction: float = 0.1  # held out from train for the per-epoch validation ELBO
    image_size: list[int] | None = None  # [H, W] to resize image folders to; None = first image's
    image_shape: list[int] | None = None  # [H, W] or [C, H, W] of flat vectors (N, D) that are images
    labels: int = 0  # keep this many training labels, balanced over classes (0: all); M2 only
    features: str | None = None  # M1+M2: train on the codes q(z1|x) of this VAE run folder


# None below means "the dataset's default" (see GENERIC_DEFAULTS and `vaelab datasets`).
@dataclass
class ModelConfig:
    family: str = "vae"  # vae | m2 (y a partly observed latent: q(y|x), q(z|x,y), p(x|y,z))
    arch: str | None = None  # mlp | conv
    latent_dim: int | None = None
    hidden: list[int] | None = None  # dense layer sizes
    activation: str = "relu"  # relu | gelu | tanh | elu | softplus
    likelihood: str | None = None  # see LIKELIHOOD_NAMES
    obs_scale: float | None = None  # the standard deviation of the fixed-variance Gaussian
    x_shape: list[int] = field(default_factory=list)  # (C, H, W) or (D,); filled from the data
    cond_dim: int = 0  # size of the label/attribute vector y of a conditional VAE; 0 = none
    channels: list[int] = field(default_factory=lambda: [32, 64])  # conv widths, one per /2 stage


@dataclass
class ObjectiveConfig:
    """How a forward pass is scored; see vaelab.objectives for the formulas and papers."""

    name: str = "elbo"  # elbo | iwae | ae (plain autoencoder) | kl-only
    beta: float = 1.0  # weight of the KL term (beta-VAE when != 1)
    num_samples: int = 1  # latent samples per input (k of the IWAE bound)
    warmup: str = "none"  # KL weight schedule: none | linear | cyclical
    warmup_epochs: float = 10.0  # linear: epochs from 0 to beta; cyclical: epochs per cycle
    cycle_ratio: float = 0.5  # cyclical: share of each cycle spent rising (R of Fu et al. 2019)
    free_bits: float = 0.0  # KL floor per latent dimension in nats (Kingma et al. 2016); 0 = off
    capacity: float = 0.0  # target KL C in nats (Burgess et al. 2018); 0 = off
    capacity_epochs: float = 10.0  # epochs over which C rises linearly from 0 to capacity
    gamma: float = 1000.0  # capacity control: the weight of |KL - C| (Burgess et al. used 1000)
    alpha: float | None = None  # m2: weight of -log q(y|x) per labelled example; None: N / N_l


@dataclass
class TrainConfig:
    epochs: int | None = None
    batch_size: int | None = None
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
        _reject_unknown(d, [*SECTIONS, "format_version"], source)
        kwargs = {name: _section(section, d[name], f"{source}: [{name}]")
                  for name, section in SECTIONS.items() if name in d}
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


SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig,
                             "objective": ObjectiveConfig, "train": TrainConfig}


def apply_defaults(config: Config, dataset_defaults: dict[str, dict[str, Any]] | None = None
                   ) -> Config:
    """A copy of `config` whose unset (None) settings take the dataset's defaults, then
    GENERIC_DEFAULTS. The one place defaults are applied; `config` itself is not changed."""
    d = config.to_dict()
    for layer in (dataset_defaults or {}, GENERIC_DEFAULTS):
        for section, values in layer.items():
            for key, value in values.items():
                if d[section].get(key) is None:
                    d[section][key] = copy.deepcopy(value)
    return Config.from_dict(d, "defaults")


def model_defaults(model: ModelConfig) -> ModelConfig:
    """A ModelConfig with its unset settings taken from GENERIC_DEFAULTS (for models built
    without a dataset, e.g. in tests); the same rule as `apply_defaults`."""
    return apply_defaults(Config(model=model)).model


T = typing.TypeVar("T")


def need(value: T | None, key: str) -> T:
    """A setting that the defaults have filled in (see apply_defaults); unset is a bug."""
    if value is None:
        raise ValueError(f"{key} is unset: apply the defaults first (vaelab.config.apply_defaults)")
    return value


def _reject_unknown(d: dict[str, Any], known: list[str], where: str) -> None:
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(known)}"
            raise VaelabError(f"{where}: unknown key {key!r}{hint}")


def _section(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise VaelabError(f"{where}: expected a table of keys, got {type(values).__name__}")
    types = typing.get_type_hints(cls)
    _reject_unknown(values, list(types), where)
    kwargs = {key: _coerce(value, types[key], f"{where} {key}") for key, value in values.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Checks a value against a field's type: bool, int, float, str or list[int], or None where
    the type allows it."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) \
        else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise VaelabError(f"{where}: expected {_type_name(hint)}, got nothing (null)")
    kind = next(t for t in options if t is not type(None))
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not -1e300 < value < 1e300:  # NaN, inf, or an int too big for a float
            raise VaelabError(f"{where}: expected a finite number, got {value!r}")
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    else:  # list[int]
        ok = isinstance(value, list | tuple) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        value = list(value) if ok else value
    if not ok:
        raise VaelabError(f"{where}: expected {_type_name(hint)}, got {value!r}")
    return value


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _one_of(value: Any, names: tuple[str, ...], key: str) -> tuple[bool, str]:
    return value is None or value in names, f"{key} must be one of {', '.join(names)}, not '{value}'"


def _at_least(value: Any, low: float, key: str, strict: bool = False) -> tuple[bool, str]:
    ok = value is None or (value > low if strict else value >= low)
    return ok, f"{key} must be {'>' if strict else '>='} {low:g}, got {value}"


def validate(config: Config, source: str = "config") -> None:
    """Range checks that the types cannot express; one message per problem, naming the key.
    Unset (None) settings pass: they are checked again once the defaults are applied."""
    m, o, t, d = config.model, config.objective, config.train, config.data
    checks = [
        _at_least(m.latent_dim, 1, "model.latent_dim"),
        (m.hidden is None or all(h >= 1 for h in m.hidden), "model.hidden sizes must be >= 1"),
        (all(c >= 1 for c in m.channels) and len(m.channels) >= 1,
         "model.channels must be one or more sizes >= 1"),
        _one_of(m.arch, ARCHS, "model.arch"),
        _one_of(m.family, FAMILIES, "model.family"),
        _at_least(o.alpha, 0, "objective.alpha"),
        _at_least(d.labels, 0, "data.labels"),
        _one_of(m.activation, ACTIVATIONS, "model.activation"),
        _one_of(m.likelihood, LIKELIHOOD_NAMES, "model.likelihood"),
        _at_least(m.obs_scale, 0, "model.obs_scale", strict=True),
        _at_least(m.cond_dim, 0, "model.cond_dim"),
        _one_of(o.name, OBJECTIVE_NAMES, "objective.name"),
        _at_least(o.beta, 0, "objective.beta"),
        _at_least(o.num_samples, 1, "objective.num_samples"),
        _one_of(o.warmup, WARMUPS, "objective.warmup"),
        _at_least(o.warmup_epochs, 0, "objective.warmup_epochs", strict=True),
        (0 < o.cycle_ratio <= 1, "objective.cycle_ratio must be in (0, 1]"),
        _at_least(o.free_bits, 0, "objective.free_bits"),
        _at_least(o.capacity, 0, "objective.capacity"),
        _at_least(o.capacity_epochs, 0, "objective.capacity_epochs", strict=True),
        _at_least(o.gamma, 0, "objective.gamma", strict=True),
        (not (o.capacity and o.beta != 1),
         "objective.capacity: capacity control weighs |KL - C| by objective.gamma, not beta "
         "(Burgess et al. 2018); leave beta at 1 and set gamma"),
        _at_least(t.epochs, 1, "train.epochs"),
        _at_least(t.batch_size, 1, "train.batch_size"),
        _at_least(t.lr, 0, "train.lr", strict=True),
        _one_of(t.lr_schedule, LR_SCHEDULES, "train.lr_schedule"),
        (0 <= t.lr_final <= t.lr, f"train.lr_final must be in [0, train.lr], got {t.lr_final}"),
        _at_least(t.lr_decay_epochs, 0, "train.lr_decay_epochs"),
        _one_of(t.precision, PRECISIONS, "train.precision"),
        _at_least(t.checkpoint_every, 0, "train.checkpoint_every"),
        _at_least(t.log_every, 1, "train.log_every"),
        _at_least(t.grad_clip, 0, "train.grad_clip"),
        _at_least(t.checkpoint_minutes, 0, "train.checkpoint_minutes"),
        _at_least(t.max_bad_steps, 1, "train.max_bad_steps"),
        (d.image_size is None or _is_size(d.image_size, 2),
         "data.image_size must be [height, width], two numbers >= 1"),
        (d.image_shape is None or _is_size(d.image_shape, 2) or _is_size(d.image_shape, 3),
         "data.image_shape must be [height, width] or [channels, height, width], numbers >= 1"),
        _one_of(d.binarize, BINARIZE, "data.binarize"),
        (d.features is None or d.features.strip() != "",
         "data.features must name a run folder (a trained VAE), or be left out"),
        (d.features is None or (d.binarize == "none" and d.image_shape is None),
         "data.features: the codes of a run are real vectors; leave data.binarize and "
         "data.image_shape unset (the run's own data settings are used to encode)"),
        (0 <= d.valid_fraction < 1, "data.valid_fraction must be in [0, 1)"),
    ]
    for ok, message in checks:
        if not ok:
            raise VaelabError(f"{source}: {message}")


def _is_size(value: Any, length: int) -> bool:
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value))


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
