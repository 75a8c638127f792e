"""Lipschitz-by-design networks: 1-Lipschitz layers with GroupSort/MaxMin activations.

Two ways to keep every weight matrix at spectral norm <= 1 while training:
* orthogonal layers by Björck orthonormalisation (Björck & Bowie, SIAM J. Numer. Anal.
  1971; used with GroupSort by Anil, Lucas & Grosse, "Sorting out Lipschitz function
  approximation", ICML 2019): each layer holds a free matrix V and uses W = the fixed point
  of W <- (3/2) W - (1/2) W W^T W started at V / ||V||_F, whose singular values all go to 1
  (the nearest matrix with orthonormal rows or columns);
* spectral normalisation with the power method (Miyato et al., ICLR 2018): W = V / sigma(V),
  sigma estimated by one power iteration per step (torch's parametrisation).
With MaxMin or GroupSort activations (1-Lipschitz in l2, gradient-norm preserving) the
network is 1-Lipschitz by construction. The exported weights are projected once more onto
the ball ||W||_2 <= 1 - CONSTRAINT_MARGIN with an exact SVD, so the bound holds for the
stored network and certified spectral norms (relative slack ~1e-6) still certify <= 1.

Tasks: the suite's 2-D Gaussian-process regression (harness/train.py `synthetic_gp`) and
two tabular ones from scikit-learn's bundled data (no download), standardised:
* wine: the first 11 of the 13 features, target +1 for cultivar 0 and -1 for the others
  (least squares on the labels);
* diabetes: the first 9 of the 10 features (age .. s5), target the standardised disease
  progression (least squares).
Float64, one CPU thread, fixed seeds: a rerun on the same machine gives the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import network
from ..errors import InputError
from ..io import from_torch
from .train import CONSTRAINT_MARGIN, Trained, _torch_single_thread, fit, project_operator_norm
from .train import synthetic_gp as _synthetic_gp

DESIGNS = ("bjorck", "spectral")
TASKS = ("gp2d", "wine", "diabetes")
# layer sizes of each task's network (input first)
TASK_SIZES = {"gp2d": (2, 20, 20, 20, 1), "wine": (11, 12, 12, 1), "diabetes": (9, 16, 16, 1)}
# Björck iterations in the forward pass while training, and on export (to convergence:
# the singular values' distance to 1 squares every step near the fixed point)
BJORCK_TRAIN_STEPS = 15
BJORCK_EXPORT_STEPS = 100
TRAIN_EPOCHS = {"gp2d": 150, "wine": 300, "diabetes": 300}


def bjorck(V: Any, steps: int) -> Any:
    """Björck orthonormalisation of a torch matrix: `steps` iterations of
    W <- 1.5 W - 0.5 W W^T W from V / ||V||_F (so ||W||_2 <= 1 at the start, where the
    iteration converges); differentiable."""
    W = V / V.norm().clamp_min(1e-300)
    tall = W.shape[0] > W.shape[1]
    if tall:
        W = W.T
    for _ in range(steps):
        W = 1.5 * W - 0.5 * (W @ W.T) @ W
    return W.T if tall else W


def _bjorck_linear(n_in: int, n_out: int) -> Any:
    import torch
    from torch import nn

    class BjorckLinear(nn.Module):
        """A linear layer whose weight is the Björck orthonormalisation of a free matrix."""

        def __init__(self) -> None:
            super().__init__()
            base = nn.Linear(n_in, n_out).double()
            self.V = nn.Parameter(base.weight.detach().clone())
            self.bias = nn.Parameter(base.bias.detach().clone())

        def weight(self, steps: int = BJORCK_TRAIN_STEPS) -> torch.Tensor:
            return bjorck(self.V, steps)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight().T + self.bias

    return BjorckLinear()


def lipschitz_module(sizes: Sequence[int], design: str, group_size: int = 2) -> Any:
    """A float64 nn.Sequential of 1-Lipschitz linear layers (`design`: "bjorck" or
    "spectral") with GroupSort(group_size) between them (group size 2: MaxMin)."""
    from torch import nn

    if design not in DESIGNS:
        raise InputError(f"unknown design {design!r}: use one of {', '.join(DESIGNS)}")
    mods: list[Any] = []
    for k in range(len(sizes) - 1):
        if design == "bjorck":
            mods.append(_bjorck_linear(sizes[k], sizes[k + 1]))
        else:
            from torch.nn.utils.parametrizations import spectral_norm

            mods.append(spectral_norm(nn.Linear(sizes[k], sizes[k + 1]).double()))
        if k < len(sizes) - 2:
            if sizes[k + 1] % group_size:
                raise InputError(f"group size {group_size} does not divide the hidden width "
                                 f"{sizes[k + 1]}")
            mods.append(network.GroupSortModule(group_size))
    return nn.Sequential(*mods).double()


def export(model: Any) -> Any:
    """The trained model as a plain nn.Sequential (Linear and GroupSort modules) whose
    weights are projected onto ||W||_2 <= 1 - CONSTRAINT_MARGIN (exact SVD)."""
    import torch
    from torch import nn

    mods: list[Any] = []
    with torch.no_grad():
        for m in model:
            if isinstance(m, network.GroupSortModule):
                mods.append(network.GroupSortModule(m.group_size))
                continue
            W = m.weight(BJORCK_EXPORT_STEPS) if hasattr(m, "V") else m.weight
            b = m.bias
            lin = nn.Linear(W.shape[1], W.shape[0]).double()
            lin.weight.copy_(torch.as_tensor(project_operator_norm(
                W.detach().numpy(), "2", 1.0 - CONSTRAINT_MARGIN)))
            lin.bias.copy_(b.detach())
            mods.append(lin)
    return nn.Sequential(*mods).double().eval()


def tabular_data(task: str) -> tuple[np.ndarray, np.ndarray]:
    """Standardised inputs and targets of a tabular task ("wine" or "diabetes")."""
    from sklearn.datasets import load_diabetes, load_wine

    if task == "wine":
        data = load_wine()
        X = data.data[:, :11].astype(np.float64)
        y = np.where(data.target == 0, 1.0, -1.0)
    elif task == "diabetes":
        data = load_diabetes()
        X = data.data[:, :9].astype(np.float64)
        y = data.target.astype(np.float64)
        y = (y - y.mean()) / y.std()
    else:
        raise InputError(f"unknown tabular task {task!r}: use wine or diabetes")
    X = (X - X.mean(0)) / X.std(0)
    return X, y


def task_data(task: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    if task == "gp2d":
        return _synthetic_gp(500, seed)
    return tabular_data(task)


def train_lipschitz_net(task: str, design: str, *, group_size: int = 2,
                        sizes: Sequence[int] | None = None, epochs: int | None = None,
                        lr: float = 5e-3, seed: int = 0) -> Trained:
    """A 1-Lipschitz (l2) GroupSort network trained on `task` ("gp2d", "wine",
    "diabetes") with `design` ("bjorck" or "spectral"); X (the training inputs) is stored
    beside it and info["known_bound"] = 1."""
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}: use one of {', '.join(TASKS)}")
    sizes = tuple(sizes or TASK_SIZES[task])
    X, y = task_data(task)
    if X.shape[1] != sizes[0]:
        raise InputError(f"task {task} has {X.shape[1]} inputs, the sizes start at {sizes[0]}")
    salt = 1000 * TASKS.index(task) + 7 * DESIGNS.index(design) + group_size
    with _torch_single_thread(seed + salt):
        model = lipschitz_module(sizes, design, group_size)
        loss = fit(model, X, y, loss="mse", epochs=epochs or TRAIN_EPOCHS[task], lr=lr,
                   batch_size=50, seed=seed)
        plain = export(model)
    net = from_torch(plain)
    fx = net(X).reshape(-1)
    info = {"train_mse": loss, "export_mse": float(np.mean((fx - y) ** 2)),
            "target_variance": float(np.var(y)), "known_bound": 1.0, "design": design,
            "group_size": group_size, "sizes": list(sizes)}
    return Trained(net, {"X": X}, info)


def random_maxmin(sizes: Sequence[int], seed: int = 0, *, bias_scale: float = 0.5) -> Any:
    """An untrained MaxMin MLP (W ~ N(0, 1/fan_in), b ~ N(0, bias_scale^2)): the same
    sizes without the 1-Lipschitz design, for the exact methods."""
    from .nets import random_mlp

    return random_mlp(sizes, seed, activation="maxmin", bias_scale=bias_scale)


# Problems of the suite: name -> (file under problems/, generator parameters)
LIPNET_PROBLEMS: dict[str, tuple[str, dict[str, Any]]] = {
    **{f"lipnet_{task}_{design}": (f"lipnets/{task}_{design}.npz",
                                   {"task": task, "design": design, "group_size": 2,
                                    "seed": 0})
       for task in TASKS for design in DESIGNS},
    "maxmin_random_11": ("lipnets/maxmin_random_11.npz",
                         {"random": [11, 12, 12, 1], "seed": 0}),
    "maxmin_random_9": ("lipnets/maxmin_random_9.npz", {"random": [9, 16, 16, 1], "seed": 0}),
}


def generate(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray]]:
    """The network and extras of one LIPNET_PROBLEMS entry (the generator of the suite)."""
    if "random" in params:
        return random_maxmin(params["random"], params.get("seed", 0)), {}
    t = train_lipschitz_net(params["task"], params["design"],
                            group_size=params.get("group_size", 2), seed=params.get("seed", 0))
    return t.net, t.extras


def write_problems(root: str | Path, only: Sequence[str] | None = None) -> list[Path]:
    """Generate the LIPNET_PROBLEMS files under `root` (the suite's problems/ directory)
    with io.save; returns their paths."""
    from ..io import save

    out = []
    for name, (file, params) in LIPNET_PROBLEMS.items():
        if only is not None and name not in only:
            continue
        net, extras = generate(params)
        out.append(save(net, Path(root) / file, **extras))
    return out
