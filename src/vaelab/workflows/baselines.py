"""Baselines for semi-supervised classification: what N labels give without the unlabelled data.

The comparisons of Kingma, Rezende, Mohamed & Welling (2014), "Semi-Supervised Learning with
Deep Generative Models", Table 1: a classifier fitted on the N labelled examples alone, either
on the inputs (their "NN" row: a neural network trained on the labels only) or on the latent
codes of a VAE trained on all the data without labels (their "M1+TSVM" row; here M1 plus a
logistic regression or an SVM). The labelled examples are the ones M2 gets with the same seed
(vaelab.data.splits.keep_labels on the same training split), so the numbers compare one to one.

- logreg: scikit-learn's LogisticRegression (L2, C=1, lbfgs, max_iter=1000), inputs as they are.
- svm: scikit-learn's SVC (RBF kernel, C=1, gamma="scale").
- mlp: the network of M2's q(y|x) (vaelab.models.build_model: an MLP with the model's hidden
  sizes and activation) trained with cross-entropy by Adam (lr 1e-3) for a fixed number of
  steps on minibatches of up to 128 labelled examples, no early stopping (that would need more
  labels for validation). The weights are initialised with `seed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from vaelab import runfolder
from vaelab.config import Config, DataConfig, ModelConfig, apply_defaults, need
from vaelab.data import Data
from vaelab.data.features import Codes, load_codes
from vaelab.data.splits import keep_labels
from vaelab.errors import VaelabError
from vaelab.models.mlp import mlp
from vaelab.training import encode_run

MLP_BATCH = 128


@dataclass
class Options:
    """Settings of the classifiers; the sklearn ones take none (see the module's docstring)."""

    seed: int = 0  # the label draw and the MLP's initialisation and minibatches
    hidden: list[int] | None = None  # mlp: hidden sizes (None: the data's model default)
    activation: str = "relu"
    steps: int = 1000  # mlp: Adam steps
    lr: float = 1e-3


@dataclass
class BaselineResult:
    """The test error of one baseline (a fraction; `test_error_sem` is its standard error over
    the test examples, sqrt(e (1 - e) / (n - 1)): the uncertainty of the estimate for this one
    draw of labels, not the spread over draws)."""

    method: str
    inputs: str  # "inputs" (x itself) or "codes of RUN (step S)"
    dataset: str
    labels: int
    seed: int
    test_error: float
    test_error_sem: float
    n_test: int
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"test error {100 * self.test_error:.2f}% +- {100 * self.test_error_sem:.2f} "
                f"(s.e.m. over {self.n_test} test examples): {self.method} on the "
                f"{self.inputs} of {self.dataset}, {self.labels} labels (seed {self.seed})")


Fit = Callable[[Tensor, Tensor, Tensor, int, Options], Tensor]  # x, y, x_test, K -> predictions


def _logreg(x: Tensor, y: Tensor, x_test: Tensor, k: int, o: Options) -> Tensor:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=1000).fit(x.numpy(), y.numpy())
    return torch.from_numpy(clf.predict(x_test.numpy()))


def _svm(x: Tensor, y: Tensor, x_test: Tensor, k: int, o: Options) -> Tensor:
    from sklearn.svm import SVC

    return torch.from_numpy(SVC().fit(x.numpy(), y.numpy()).predict(x_test.numpy()))


def _mlp(x: Tensor, y: Tensor, x_test: Tensor, k: int, o: Options) -> Tensor:
    gen = torch.Generator().manual_seed(o.seed)
    with torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(o.seed)
        net = mlp([x.shape[1], *need(o.hidden, "hidden"), k], o.activation)
    optimizer = torch.optim.Adam(net.parameters(), lr=o.lr)
    batch = min(len(x), MLP_BATCH)
    for _ in range(o.steps):
        idx = torch.randperm(len(x), generator=gen)[:batch]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return torch.cat([net(part).argmax(-1) for part in x_test.split(4096)])


METHODS: dict[str, Fit] = {"logreg": _logreg, "svm": _svm, "mlp": _mlp}


def error_rate(predicted: Tensor, y: Tensor) -> tuple[float, float]:
    """The share of wrong predictions and its standard error (the sample standard deviation of
    the 0/1 errors over sqrt(n))."""
    wrong = (predicted.cpu() != y.cpu()).double()
    sem = float(wrong.std() / math.sqrt(len(wrong))) if len(wrong) > 1 else 0.0
    return float(wrong.mean()), sem


def num_classes(data: Data) -> int:
    """K, as M2 counts it (vaelab.training): the class names, else the largest label + 1."""
    if data.train.y is None or data.train.y.dim() != 1:
        raise VaelabError(f"labels: {data.name} has no class labels; a classifier needs some")
    return len(data.classes) if data.classes else int(data.train.y.max()) + 1


def baseline(data: Data, labels: int, *, method: str = "logreg",
             options: Options | None = None) -> BaselineResult:
    """Fits `method` on `labels` balanced labelled training examples of `data` (drawn as M2
    draws them with the same seed) and scores it on the test split.

    Args:
        data: the inputs, or the codes of a VAE (`codes`): x (N, *x_shape) is flattened.
        labels: N, at least one per class.
        method: logreg | svm | mlp (see the module's docstring).
        options: seed, and the MLP's settings.
    """
    if method not in METHODS:
        raise VaelabError(f"method must be one of {', '.join(METHODS)}, not '{method}'")
    o = Options() if options is None else options
    k = num_classes(data)
    if data.test.y is None:
        raise VaelabError(f"labels: {data.name} has no test labels to score a classifier on")
    _, index = keep_labels(data.train, labels, k, o.seed)
    if method == "mlp" and o.hidden is None:  # M2's classifier: the model's hidden sizes
        model = apply_defaults(Config(model=ModelConfig()), data.defaults).model
        o = Options(o.seed, need(model.hidden, "model.hidden"), o.activation, o.steps, o.lr)
    x = data.train.x[index].flatten(1).float()
    y = need(data.train.y, "labels")[index]
    predicted = METHODS[method](x, y, data.test.x.flatten(1).float(), k, o)
    error, sem = error_rate(predicted, data.test.y)
    inputs = (f"codes of {data.run} (step {data.step})" if isinstance(data, Codes) else "inputs")
    settings = ({"hidden": o.hidden, "activation": o.activation, "steps": o.steps, "lr": o.lr}
                if method == "mlp" else {})
    name = data.name.removesuffix("-codes") if isinstance(data, Codes) else data.name
    return BaselineResult(method, inputs, name, labels, o.seed, error, sem, len(data.test),
                          settings)


def codes(run: str | Path, dataset: str | None = None) -> Codes:
    """The codes of the VAE trained in `run` (written to RUN/codes.safetensors on first use):
    the posterior means of its own splits. `dataset`, when given, must be the run's."""
    encode_run(run)
    name = dataset if dataset is not None else runfolder.read_config(run).data.name
    return load_codes(DataConfig(name=name, features=str(run)))


def summarise(errors: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean over several label draws."""
    values = np.asarray(errors, dtype=float)
    sem = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), sem
