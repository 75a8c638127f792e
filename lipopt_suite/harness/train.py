"""Training the problem suite's networks, deterministically and in seconds.

* `train_digits_mlp`, `train_digits_cnn`, `train_digits_resnet`: classifiers on
  scikit-learn's bundled 8x8 digits (real images that ship with scikit-learn, no download),
  pixels scaled to [0, 1]; the ResNet has residual connections (a graph network).
* `synthetic_gp`, `train_scaman_mlp`: the 2-D regression task of Scaman & Virmaux (NeurIPS
  2018, Section 7): a sample of a Gaussian process with an RBF kernel of length scale 1 at
  inputs 4 * N(0, I_2), fitted by MLPs with Adam (lr 1e-3) on the mean squared error.
* `train_constrained_mlp`: the same task under a Lipschitz constraint, enforced after every
  optimiser step either by a Euclidean projection of each weight matrix onto an operator-norm
  ball (l2: singular values clipped; l_inf: rows projected onto an l1 ball; l1: columns) as in
  Gouk et al., Machine Learning 2021, or by spectral normalisation (Miyato et al., ICLR 2018).
  The exported weights satisfy the constraint exactly, so the product of the per-layer radii
  is a known upper bound on the Lipschitz constant in that norm.

Everything trains in float64 on one CPU thread with fixed seeds, so a rerun on the same
machine reproduces the same weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import from_torch
from ..network import Network

# The constraint is enforced with this relative margin on the exported weights, so that a
# certified operator norm computed in floating point (relative slack <= 1e-6, see
# core/linalg.py CERT_SLACK_ESTIMATE) still sits below the per-layer radius.
CONSTRAINT_MARGIN = 1e-6
CONSTRAINTS = ("l2", "linf", "l1", "spectral")
# norm in which each constraint bounds the network's Lipschitz constant
CONSTRAINT_NORM = {"l2": "2", "linf": "inf", "l1": "1", "spectral": "2"}

DIGITS_TEST = 300  # test images kept aside (stored as X with labels y)


@dataclass(frozen=True)
class Trained:
    """A trained network, the arrays stored beside it, and what training reports."""

    net: Network
    extras: dict[str, np.ndarray]
    info: dict[str, Any]


@contextlib.contextmanager
def _torch_single_thread(seed: int) -> Iterator[None]:
    """One thread and a fixed seed for the duration of a training run (restored after)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
        torch.set_num_threads(threads)


def mlp_module(sizes: Sequence[int], group_size: int = 0) -> Any:
    """A float64 nn.Sequential with layer sizes `sizes` (input first): ReLU hidden layers,
    or GroupSort ones of groups of `group_size` (2: MaxMin) when it is >= 2."""
    from torch import nn

    from ..network import GroupSortModule

    mods: list[Any] = []
    for k in range(len(sizes) - 1):
        mods.append(nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            mods.append(GroupSortModule(group_size) if group_size >= 2 else nn.ReLU())
    return nn.Sequential(*mods).double()


def fit(model: Any, X: np.ndarray, y: np.ndarray, *, loss: str = "mse", epochs: int = 100,
        lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
        after_step: Callable[[Any], None] | None = None) -> float:
    """Adam on minibatches in a seeded order; `after_step(model)` runs after every update
    (the projection of constrained training). Returns the final full-data loss."""
    import torch
    from torch import nn

    if loss not in ("mse", "ce"):
        raise InputError(f"unknown loss {loss!r}: use mse or ce")
    Xt = torch.as_tensor(X, dtype=torch.float64)
    yt = (torch.as_tensor(y, dtype=torch.float64).reshape(len(y), -1) if loss == "mse"
          else torch.as_tensor(y, dtype=torch.long))
    criterion = nn.MSELoss() if loss == "mse" else nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(Xt)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            criterion(model(Xt[idx]), yt[idx]).backward()
            opt.step()
            if after_step is not None:
                with torch.no_grad():
                    after_step(model)
    model.eval()
    with torch.no_grad():
        return float(criterion(model(Xt), yt))


# ----------------------------------------------------------------------------- digits
def digits_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits scaled to [0, 1], split by a seeded permutation:
    (X_train, y_train, X_test, y_test) with DIGITS_TEST test images, rows flat (64)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    X = data.data.astype(np.float64) / 16.0
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(X))
    test, train = order[:DIGITS_TEST], order[DIGITS_TEST:]
    return X[train], y[train], X[test], y[test]


def _digits_extras(model: Any, X_test: np.ndarray, y_test: np.ndarray, shape: tuple[int, ...]
                   ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    import torch

    with torch.no_grad():
        pred = model(torch.as_tensor(X_test.reshape((-1, *shape)))).argmax(1).numpy()
    correct = np.flatnonzero(pred == y_test)
    if correct.size == 0:
        raise RuntimeError("the digits classifier got no test image right")
    center = X_test[correct[0]]
    extras = {"X": X_test, "y": y_test.astype(np.float64), "center": center}
    info = {"test_accuracy": float(np.mean(pred == y_test)), "center_index": int(correct[0]),
            "center_label": int(y_test[correct[0]])}
    return extras, info


def train_digits_mlp(sizes: Sequence[int] = (64, 20, 20, 10), *, epochs: int = 60,
                     lr: float = 3e-3, seed: int = 0) -> Trained:
    """A ReLU MLP classifying the 8x8 digits (flat inputs of 64 pixels in [0, 1])."""
    X_tr, y_tr, X_te, y_te = digits_data(seed)
    with _torch_single_thread(seed):
        model = mlp_module(sizes)
        loss = fit(model, X_tr, y_tr, loss="ce", epochs=epochs, lr=lr, seed=seed)
        extras, info = _digits_extras(model, X_te, y_te, (sizes[0],))
    return Trained(from_torch(model), extras, {"train_loss": loss, **info})


def digits_cnn_module(channels: tuple[int, int] = (8, 16)) -> Any:
    """conv 3x3 (pad 1) -> relu -> maxpool 2 -> conv 3x3 (pad 1) -> relu -> flatten ->
    linear 10, for 1x8x8 inputs."""
    from torch import nn

    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(c2 * 4 * 4, 10)).double()


def train_digits_cnn(channels: tuple[int, int] = (8, 16), *, epochs: int = 30,
                     lr: float = 3e-3, seed: int = 0) -> Trained:
    """A small ReLU CNN on the 8x8 digits (inputs shaped (1, 8, 8)); X is stored flat."""
    X_tr, y_tr, X_te, y_te = digits_data(seed)
    with _torch_single_thread(seed):
        model = digits_cnn_module(channels)
        loss = fit(model, X_tr.reshape(-1, 1, 8, 8), y_tr, loss="ce", epochs=epochs, lr=lr,
                   seed=seed)
        extras, info = _digits_extras(model, X_te, y_te, (1, 8, 8))
    return Trained(from_torch(model, (1, 8, 8)), extras, {"train_loss": loss, **info})


def digits_resnet_module(channels: int = 8, blocks: int = 2) -> Any:
    """A small ResNet for 1x8x8 inputs: conv 3x3 -> relu, `blocks` residual blocks
    x -> relu(x + conv(relu(conv(x)))) (3x3, padding 1), 2x2 average pooling, flatten,
    linear 10 (He et al., CVPR 2016, without batch norm)."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
            self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

        def forward(self, x: Any) -> Any:
            return (x + self.conv2(self.conv1(x).relu())).relu()

    class DigitsResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU())
            self.blocks = nn.Sequential(*[Block() for _ in range(blocks)])
            self.head = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(),
                                      nn.Linear(channels * 16, 10))

        def forward(self, x: Any) -> Any:
            return self.head(self.blocks(self.stem(x)))

    return DigitsResNet().double()


def train_digits_resnet(channels: int = 8, blocks: int = 2, *, epochs: int = 10,
                        lr: float = 3e-3, seed: int = 0) -> Trained:
    """The small residual network on the 8x8 digits, traced into a graph network (inputs
    shaped (1, 8, 8)); X is stored flat."""
    X_tr, y_tr, X_te, y_te = digits_data(seed)
    with _torch_single_thread(seed):
        model = digits_resnet_module(channels, blocks)
        loss = fit(model, X_tr.reshape(-1, 1, 8, 8), y_tr, loss="ce", epochs=epochs, lr=lr,
                   seed=seed)
        extras, info = _digits_extras(model, X_te, y_te, (1, 8, 8))
    return Trained(from_torch(model, (1, 8, 8)), extras, {"train_loss": loss, **info})


# ----------------------------------------------------------------- 2-D synthetic task
def synthetic_gp(n: int = 1000, seed: int = 0, *, length_scale: float = 1.0,
                 spread: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs X = spread * N(0, I_2) (n rows) and y, one sample of a zero-mean Gaussian
    process with RBF kernel exp(-|x - x'|^2 / (2 length_scale^2)) at those inputs."""
    rng = np.random.default_rng(seed)
    X = spread * rng.standard_normal((n, 2))
    sq = np.sum((X[:, None, :] - X[None, :, :]) ** 2, axis=-1)
    K = np.exp(-sq / (2 * length_scale ** 2))
    # jitter keeps the Cholesky factor of the (numerically singular) kernel matrix real
    L = np.linalg.cholesky(K + 1e-8 * np.eye(n))
    return X, L @ rng.standard_normal(n)


def scaman_sizes(layers: int, width: int = 20) -> list[int]:
    """Layer sizes of an MLP with `layers` linear layers: 2 -> width ... width -> 1."""
    if layers < 2:
        raise InputError(f"an MLP needs at least 2 layers, got {layers}")
    return [2] + [width] * (layers - 1) + [1]


def train_scaman_mlp(layers: int, *, width: int = 20, n: int = 1000, epochs: int = 300,
                     lr: float = 1e-3, seed: int = 0, data_seed: int = 0) -> Trained:
    """An MLP with `layers` linear layers fitted to the synthetic GP sample (Adam, MSE)."""
    X, y = synthetic_gp(n, data_seed)
    with _torch_single_thread(seed + 1000 * layers):
        model = mlp_module(scaman_sizes(layers, width))
        loss = fit(model, X, y, loss="mse", epochs=epochs, lr=lr, batch_size=50, seed=seed)
    return Trained(from_torch(model), {"X": X}, {"train_mse": loss,
                                                 "target_variance": float(np.var(y))})


# ------------------------------------------------------------- constrained training
def _project_rows_l1(W: np.ndarray, radius: float) -> np.ndarray:
    """Euclidean projection of each row of W onto the l1 ball of `radius` (Duchi et al.,
    ICML 2008: sort, find the threshold, soft-threshold)."""
    out = W.copy()
    for i, row in enumerate(W):
        a = np.abs(row)
        if a.sum() <= radius:
            continue
        u = np.sort(a)[::-1]
        css = np.cumsum(u)
        k = np.arange(1, a.size + 1)
        rho = np.nonzero(u * k > css - radius)[0][-1]
        theta = (css[rho] - radius) / (rho + 1)
        out[i] = np.sign(row) * np.maximum(a - theta, 0.0)
    return out


def project_operator_norm(W: np.ndarray, norm: str, radius: float) -> np.ndarray:
    """The nearest matrix (Frobenius distance) with ||W||_{p->p} <= radius.

    p = 2 clips the singular values; p = inf (max row l1 norm) projects each row onto the
    l1 ball; p = 1 (max column l1 norm) projects each column.
    """
    if norm == "2":
        U, s, Vt = np.linalg.svd(W, full_matrices=False)
        return (U * np.minimum(s, radius)) @ Vt
    if norm == "inf":
        return _project_rows_l1(W, radius)
    if norm == "1":
        return _project_rows_l1(W.T, radius).T
    raise InputError(f"unknown norm {norm!r} for a projection: use 2, inf or 1")


def _projector(norm: str, radius: float) -> Callable[[Any], None]:
    import torch
    from torch import nn

    def project(model: Any) -> None:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                W = project_operator_norm(m.weight.detach().numpy(), norm, radius)
                m.weight.copy_(torch.as_tensor(W))

    return project


def train_constrained_mlp(constraint: str, *, radius: float = 1.0, layers: int = 4,
                          width: int = 20, n: int = 500, epochs: int = 150, lr: float = 1e-3,
                          seed: int = 0, data_seed: int = 0) -> Trained:
    """An MLP fitted to the synthetic GP sample under a per-layer constraint
    ||W_k||_{p->p} <= radius, so L_p(f) <= radius ** layers (ReLU is 1-Lipschitz in every
    p-norm, coordinatewise).

    `constraint` is "l2", "linf" or "l1" (projection after each step) or "spectral"
    (spectral normalisation: the weight is reparametrised as radius * W / sigma(W) with
    sigma(W) estimated by one power iteration per step). The exported weights are
    projected once more, onto the ball of radius * (1 - CONSTRAINT_MARGIN), with the exact
    norm, so the bound holds for the stored network and not only for the estimate.
    """
    import torch
    from torch import nn

    if constraint not in CONSTRAINTS:
        raise InputError(f"unknown constraint {constraint!r}: use one of {', '.join(CONSTRAINTS)}")
    norm = CONSTRAINT_NORM[constraint]
    X, y = synthetic_gp(n, data_seed)
    with _torch_single_thread(seed + 7 * CONSTRAINTS.index(constraint)):
        model = mlp_module(scaman_sizes(layers, width))
        linears = [m for m in model if isinstance(m, nn.Linear)]
        if constraint == "spectral":
            from torch.nn.utils.parametrizations import spectral_norm

            for i, m in enumerate(model):
                if isinstance(m, nn.Linear):
                    model[i] = spectral_norm(m)
            # every layer is normalised to sigma = 1; the whole bound radius ** layers is
            # carried by a constant output scale, folded into the last layer on export
            scale = radius ** layers
            loss = fit(nn.Sequential(model, _ScaleOutput(scale)), X, y, loss="mse",
                       epochs=epochs, lr=lr, batch_size=50, seed=seed)
            with torch.no_grad():
                weights = [(m.weight.detach().clone(), m.bias.detach().clone())
                           for m in model if isinstance(m, nn.Linear)]
            model = mlp_module(scaman_sizes(layers, width))
            linears = [m for m in model if isinstance(m, nn.Linear)]
            with torch.no_grad():
                for k, (m, (W, b)) in enumerate(zip(linears, weights)):
                    last = scale if k == len(linears) - 1 else 1.0
                    m.weight.copy_(last * W)
                    m.bias.copy_(last * b)
            targets = [1.0] * (len(linears) - 1) + [scale]
        else:
            loss = fit(model, X, y, loss="mse", epochs=epochs, lr=lr, batch_size=50, seed=seed,
                       after_step=_projector(norm, radius))
            targets = [radius] * len(linears)
        with torch.no_grad():
            for m, t in zip(linears, targets):
                W = project_operator_norm(m.weight.numpy(), norm, t * (1 - CONSTRAINT_MARGIN))
                m.weight.copy_(torch.as_tensor(W))
    net = from_torch(model)
    return Trained(net, {"X": X}, {"train_mse": loss, "norm": norm, "radius": radius,
                                   "known_bound": radius ** layers})


def _ScaleOutput(factor: float) -> Any:  # noqa: N802 - builds an nn.Module
    """An nn.Module multiplying its input by a constant."""
    from torch import nn

    class ScaleOutput(nn.Module):
        def forward(self, x: Any) -> Any:
            return factor * x

    return ScaleOutput()
