"""Small ReLU MLPs trained on the tabular data sets that scikit-learn ships (no download).

The sizes are those on which exact global constants of trained piecewise-linear nets are
reported in the literature (ExLipBaB, Splittgerber 2026): a 4-6-6-3 iris classifier, two
regressions 11-12-12-1 and 9-16-16-1, and a 13-20-16-8-3 wine classifier. Here:

* `iris_4_6_6_3`: iris, 4 features -> 3 classes (cross-entropy);
* `wine_11_12_12_1`: wine, the first 11 features (alcohol ... hue) -> the OD280/OD315 ratio
  (mean squared error);
* `diabetes_9_16_16_1`: diabetes, the 9 features other than sex -> disease progression
  (mean squared error);
* `wine_13_20_16_8_3`: wine, 13 features -> 3 cultivars (cross-entropy).

Features and regression targets are standardised (mean 0, standard deviation 1); the
standardised training inputs are stored as `X`. Training is full float64 on one CPU thread
with fixed seeds (harness/train.py's `fit`), a few seconds each, so a rerun on the same
machine reproduces the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import from_torch, save
from .train import Trained, _torch_single_thread, fit, mlp_module


@dataclass(frozen=True)
class TabularSpec:
    """One benchmark net: data set, feature columns, target, layer sizes, loss."""

    dataset: str  # "iris", "wine" or "diabetes"
    features: tuple[int, ...]
    target: int | None  # a feature column regressed on (None: the data set's own target)
    sizes: tuple[int, ...]
    loss: str  # "ce" (classes) or "mse"
    epochs: int
    lr: float = 3e-3
    seed: int = 0
    group_size: int = 0  # 0: ReLU hidden layers; g >= 2: GroupSort of groups of g (2: MaxMin)


SPECS: dict[str, TabularSpec] = {
    "iris_4_6_6_3": TabularSpec("iris", (0, 1, 2, 3), None, (4, 6, 6, 3), "ce", 300),
    "wine_11_12_12_1": TabularSpec("wine", tuple(range(11)), 11, (11, 12, 12, 1), "mse", 300),
    "diabetes_9_16_16_1": TabularSpec("diabetes", (0, 2, 3, 4, 5, 6, 7, 8, 9), None,
                                      (9, 16, 16, 1), "mse", 150),
    "wine_13_20_16_8_3": TabularSpec("wine", tuple(range(13)), None, (13, 20, 16, 8, 3), "ce",
                                     200),
}


def _standardise(a: np.ndarray) -> np.ndarray:
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def tabular_data(spec: TabularSpec) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): standardised features, and class labels (int) or a standardised target."""
    from sklearn import datasets

    loaders = {"iris": datasets.load_iris, "wine": datasets.load_wine,
               "diabetes": datasets.load_diabetes}
    if spec.dataset not in loaders:
        raise InputError(f"unknown tabular data set {spec.dataset!r}: use one of "
                         f"{', '.join(loaders)}")
    data = loaders[spec.dataset]()
    raw = np.asarray(data.data, np.float64)
    X = _standardise(raw[:, list(spec.features)])
    if spec.loss == "ce":
        return X, np.asarray(data.target, np.int64)
    y = raw[:, spec.target] if spec.target is not None else np.asarray(data.target, np.float64)
    return X, _standardise(y)


def train_tabular(name: str) -> Trained:
    """Train the benchmark net `name` (a key of SPECS), deterministically on the CPU."""
    if name not in SPECS:
        raise InputError(f"unknown tabular net {name!r}: use one of {', '.join(SPECS)}")
    return train_spec(SPECS[name])


def train_spec(spec: TabularSpec) -> Trained:
    """Train the net that `spec` describes (one of SPECS or another), deterministically."""
    X, y = tabular_data(spec)
    if X.shape[1] != spec.sizes[0]:
        raise InputError(f"{X.shape[1]} features for an input of {spec.sizes[0]}")
    with _torch_single_thread(spec.seed):
        model = mlp_module(spec.sizes, spec.group_size)
        loss = fit(model, X, y, loss=spec.loss, epochs=spec.epochs, lr=spec.lr,
                   batch_size=32, seed=spec.seed)
        info: dict[str, Any] = {"train_loss": loss, "dataset": spec.dataset,
                                "sizes": list(spec.sizes)}
        if spec.loss == "ce":
            import torch

            with torch.no_grad():
                pred = model(torch.as_tensor(X)).argmax(1).numpy()
            info["train_accuracy"] = float(np.mean(pred == y))
    return Trained(from_torch(model), {"X": X}, info)


def make_tabular(out: str | Path = "problems/tabular", names: tuple[str, ...] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """Train and save each net as OUT/NAME.npz (with X); returns what training reported."""
    report = {}
    for name in names or tuple(SPECS):
        t = train_tabular(name)
        save(t.net, Path(out) / f"{name}.npz", **t.extras)
        report[name] = t.info
    return report
