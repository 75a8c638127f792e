"""`train`: a classifier trained under one regulariser (harness/regularisers.py), exported
as a `Network` with its test data, and the record of the run.

The network is a ReLU MLP (layer sizes from the data and the hidden widths; MaxMin between
Björck layers) or the suite's digits CNN; the data are scikit-learn's bundled 8x8 digits
(the suite's split, harness/train.py `digits_data`) or a user's .npz with X (rows) and y
(integer labels), optionally X_test and y_test. Adam on cross-entropy plus the penalty, in
float64, seeded: batches and the penalties' random points come from one CPU generator, so
a rerun on the same machine (one thread, or the same GPU) gives the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedError
from ..io import from_torch
from ..network import Network
from . import regularisers as regs
from .train import (
    CONSTRAINT_MARGIN,
    _ScaleOutput,
    _torch_single_thread,
    digits_cnn_module,
    digits_data,
    mlp_module,
    project_operator_norm,
)

DIGITS_HIDDEN = (20, 20)  # the suite's digits MLP, 64-20-20-10
MODELS = ("mlp", "cnn")
DIGITS_SHAPE = (1, 8, 8)
TEST_SHARE = 0.2  # of a user's data set without X_test, kept aside for testing
MIN_SAMPLES = 10
MAX_EPOCHS = 10_000
# Pairs of the Lipschitz penalty: nearby points at distances up to PAIR_RADIUS, and step
# lengths of the adversarial penalty drawn from ALP_LENGTHS (input units: digits pixels lie
# in [0, 1], two digit images lie 2 to 6 apart)
PAIR_RADIUS = 1.0
ALP_LENGTHS = (0.05, 1.0)
ALP_XI = 1e-6  # finite-difference step of the Hessian-vector products (float64)


@dataclass(frozen=True)
class TrainingRun:
    """The exported network, the arrays stored beside it (X, y, center) and the run."""

    net: Network
    extras: dict[str, np.ndarray]
    info: dict[str, Any]


# -------------------------------------------------------------------------------- data
def load_data(data: str | Path | None, seed: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(X_train, y_train, X_test, y_test, name): the digits, or a user's .npz."""
    if data is None:
        return (*digits_data(seed), "digits")
    import zipfile

    p = Path(data)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if not zipfile.is_zipfile(p):
        raise InputError(f"{p}: not an .npz archive (X and y as plain arrays)")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{p}: not a readable .npz of plain arrays ({exc})") from None
    for key in ("X", "y"):
        if key not in arrays:
            raise InputError(f"{p}: needs arrays X and y, found {', '.join(arrays) or 'none'}")
    X, y = _data_arrays(arrays["X"], arrays["y"], f"{p}: X, y")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise InputError(f"{p}: X_test and y_test come together")
    if "X_test" in arrays:
        X_te, y_te = _data_arrays(arrays["X_test"], arrays["y_test"], f"{p}: X_test, y_test")
        if X_te.shape[1] != X.shape[1]:
            raise InputError(f"{p}: X_test has {X_te.shape[1]} columns, X has {X.shape[1]}")
        return X, y, X_te, y_te, p.name
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = max(1, round(TEST_SHARE * len(X)))
    return X[order[n_test:]], y[order[n_test:]], X[order[:n_test]], y[order[:n_test]], p.name


def _data_arrays(X: np.ndarray, y: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise InputError(f"{what}: X must be a numeric matrix (one row per sample)")
    if y.ndim != 1 or y.dtype.kind not in "biuf" or len(y) != len(X):
        raise InputError(f"{what}: y must be a vector of {len(X)} labels, one per row of X")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)) or np.abs(X).max(initial=0) > 1e100:
        raise InputError(f"{what}: X has NaN, inf or entries beyond 1e100")
    if len(X) < MIN_SAMPLES:
        raise InputError(f"{what}: {len(X)} samples, at least {MIN_SAMPLES} needed")
    yf = y.astype(np.float64)
    if not np.all(np.isfinite(yf)) or np.any(yf != np.round(yf)) or yf.min() < 0:
        raise InputError(f"{what}: y must hold class labels 0, 1, 2, ... (integers)")
    return X, yf.astype(np.int64)


# ------------------------------------------------------------------------------- models
def _layer_sizes(model: str, hidden: Sequence[int] | None, sizes: Sequence[int] | None,
                 n_in: int, n_classes: int) -> list[int]:
    if model == "cnn":
        if hidden is not None or sizes is not None:
            raise InputError("the CNN has the suite's fixed shape: drop hidden/sizes")
        if n_in != math.prod(DIGITS_SHAPE):
            raise InputError(f"the data do not match the CNN: it takes 8x8 images (64 "
                             f"inputs), the data have {n_in} columns")
        return [n_in, n_classes]
    if hidden is not None and sizes is not None:
        raise InputError("give hidden widths or layer sizes, not both")
    if sizes is not None:
        out = _positive_ints(sizes, "layer sizes")
        if len(out) < 2:
            raise InputError("layer sizes need an input and an output")
        if out[0] != n_in:
            raise InputError(f"the data do not match the net: it takes {out[0]} inputs, the "
                             f"data have {n_in} columns")
        if out[-1] < n_classes:
            raise InputError(f"the data do not match the net: {n_classes} classes, the net "
                             f"has {out[-1]} outputs")
        return out
    return [n_in, *_positive_ints(DIGITS_HIDDEN if hidden is None else hidden,
                                  "hidden widths"), n_classes]


def _positive_ints(v: Sequence[int], what: str) -> list[int]:
    out = list(v)
    if not all(isinstance(k, int | np.integer) and not isinstance(k, bool) and 0 < k <= 100_000
               for k in out):
        raise InputError(f"{what} must be positive integers, got {out}")
    return [int(k) for k in out]


def build_model(reg: regs.Regulariser, model: str, sizes: list[int], strength: float) -> Any:
    """The torch module trained on flat inputs (float64)."""
    from torch import nn

    if model == "cnn":
        return nn.Sequential(nn.Unflatten(1, DIGITS_SHAPE), digits_cnn_module()).double()
    if reg.name == "bjorck":
        from .lipnets import lipschitz_module

        return nn.Sequential(lipschitz_module(sizes, "bjorck", 2), _ScaleOutput(strength))
    if reg.name == "spectral":
        from torch.nn.utils.parametrizations import spectral_norm

        inner = mlp_module(sizes)
        for i, m in enumerate(inner):
            if isinstance(m, nn.Linear):
                inner[i] = spectral_norm(m)
        return nn.Sequential(inner, _ScaleOutput(strength))
    return mlp_module(sizes)


def _linears(module: Any) -> list[Any]:
    from torch import nn

    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _project(module: Any, norm: str, radius: float) -> None:
    """Every dense weight onto the operator-norm ball of `radius` (call under no_grad)."""
    import torch

    for m in _linears(module):
        W = project_operator_norm(m.weight.detach().cpu().numpy(), norm, radius)
        m.weight.copy_(torch.as_tensor(W, device=m.weight.device))


def export(reg: regs.Regulariser, module: Any, model: str, sizes: list[int],
           strength: float) -> Network:
    """The trained module as a Network; designed nets projected once more onto their balls
    shrunk by CONSTRAINT_MARGIN, with exact norms, so the budget holds for the stored
    weights."""
    import torch

    module = module.cpu().eval()
    if model == "cnn":
        return from_torch(module[1], DIGITS_SHAPE)
    with torch.no_grad():
        if reg.name == "bjorck":
            from .lipnets import export as export_bjorck

            plain = export_bjorck(module[0])
            last = _linears(plain)[-1]
            last.weight.mul_(strength)
            last.bias.mul_(strength)
            return from_torch(plain)
        if reg.name == "spectral":
            plain = mlp_module(sizes)
            lins = _linears(plain)
            for k, (dst, src) in enumerate(zip(lins, _linears(module[0]))):
                scale = strength if k == len(lins) - 1 else 1.0
                dst.weight.copy_(scale * src.weight)
                dst.bias.copy_(scale * src.bias)
                W = project_operator_norm(dst.weight.numpy(), "2",
                                          scale * (1 - CONSTRAINT_MARGIN))
                dst.weight.copy_(torch.as_tensor(W))
            return from_torch(plain)
        if reg.name.startswith("projection-"):
            _project(module, reg.norm, _layer_radius(strength, len(sizes) - 1)
                     * (1 - CONSTRAINT_MARGIN))
    return from_torch(module)


def _layer_radius(budget: float, layers: int) -> float:
    return budget ** (1.0 / layers)


# ---------------------------------------------------------------------------- training
def _penalty(reg: regs.Regulariser, module: Any, x: Any, target: float, gen: Any) -> Any:
    import torch

    if reg.name == "weight-decay":
        return regs.weight_decay(module)
    if reg.name == "gradient-penalty":
        return regs.gradient_penalty(module, regs.interpolates(x, gen), target)[0]
    if reg.name == "lipschitz-penalty":
        a, b = regs.pairs(x, gen, PAIR_RADIUS)
        return regs.lipschitz_penalty(module, a, b, target)[0]
    if reg.name == "adversarial-lipschitz":
        d = regs.alp_direction(module, x, xi=ALP_XI, generator=gen)
        lo, hi = ALP_LENGTHS
        lengths = (lo + (hi - lo) * torch.rand(len(x), generator=gen, dtype=x.dtype)).to(x.device)
        return regs.adversarial_lipschitz_penalty(module, x, d, lengths, target)[0]
    return torch.zeros((), dtype=x.dtype, device=x.device)


def _own_estimate(reg: regs.Regulariser, module: Any, net: Network, X: Any, strength: float,
                  target: float, gen: Any) -> dict[str, Any]:
    """What the regulariser itself says about the constant of the exported network: its
    budget (designs, guaranteed), the largest value of its penalised quantity over the
    training points (penalties: an estimate), or the product of layer norms (the rest)."""
    import torch

    if reg.strength == regs.BUDGET:
        return {"value": strength, "what": f"the budget (L_{reg.norm} <= K by construction)",
                "guaranteed": True, "norm": reg.norm}
    if reg.name in ("gradient-penalty", "lipschitz-penalty", "adversarial-lipschitz"):
        values = []
        for start in range(0, len(X), 256):
            x = X[start:start + 256]
            if reg.name == "gradient-penalty":
                v = regs.jacobian_norms(module, x, create_graph=False)
                what = "largest ||J(x)||_F over the training points"
            elif reg.name == "lipschitz-penalty":
                a, b = regs.pairs(x, gen, PAIR_RADIUS)
                with torch.no_grad():
                    v = regs.secant_ratios(module, a, b)
                what = "largest secant ratio over pairs of and near training points"
            else:
                d = regs.alp_direction(module, x, xi=ALP_XI, generator=gen)
                lo, hi = ALP_LENGTHS
                ln = (lo + (hi - lo) * torch.rand(len(x), generator=gen, dtype=x.dtype))
                with torch.no_grad():
                    v = regs.secant_ratios(module, x + ln.to(x.device)[:, None] * d, x)
                what = "largest ratio along r_adv over the training points"
            values.append(float(v.max()))
        return {"value": max(values), "what": what, "guaranteed": False, "norm": "2"}
    from ..registry import estimate

    b = estimate(net, "autolip")
    return {"value": b.value, "what": "product of the layer norms (AutoLip)",
            "guaranteed": bool(b.certified), "norm": "2"}


def _check_run(epochs: int, lr: float, batch_size: int, seed: int, target: float,
               device: str) -> None:
    def integer(v: Any, what: str, lo: int, hi: int) -> None:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
            raise InputError(f"{what} must be an integer in [{lo}, {hi}], got {v!r}")

    integer(epochs, "epochs", 1, MAX_EPOCHS)
    integer(batch_size, "batch size", 1, 1_000_000)
    integer(seed, "seed", 0, 2**63 - 1)
    for v, what in ((lr, "learning rate"), (target, "target")):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or v <= 0:
            raise InputError(f"{what} must be a positive number, got {v!r}")
    if not isinstance(device, str) or not (device in ("cpu", "cuda")
                                           or device.startswith("cuda:")):
        raise InputError(f"device must be cpu or cuda, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError("device cuda: no CUDA device is available here")


def train(regulariser: str = "none", strength: float | None = None, *, model: str = "mlp",
          hidden: Sequence[int] | None = None, sizes: Sequence[int] | None = None,
          data: str | Path | None = None, epochs: int = 30, lr: float = 3e-3,
          batch_size: int = 64, seed: int = 0, device: str = "cpu", target: float = 1.0,
          progress: bool = True, out: str | Path | None = None) -> TrainingRun:
    """Train a classifier under one regulariser and export it.

    `strength` (default: the regulariser's) is the budget K of the designs and projections,
    the clip value of clipping, the weight lambda of the penalties (whose target constant is
    `target`). With `out`, writes the canonical .npz (test data X, y and a correctly
    classified `center` beside the weights) and the run as JSON beside it (same name,
    .json). A tqdm bar on stderr follows the epochs unless `progress` is False.
    """
    import torch

    reg = regs.get_regulariser(regulariser)
    strength = reg.check(reg.default if strength is None else strength)
    if model not in MODELS:
        raise InputError(f"unknown model {model!r}: use mlp or cnn")
    if model == "cnn" and reg.mlp_only:
        raise UnsupportedError(f"regulariser {reg.name} constrains dense layers: use an MLP")
    _check_run(epochs, lr, batch_size, seed, target, device)
    X_tr, y_tr, X_te, y_te, data_name = load_data(data, seed)
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    if n_classes < 2:
        raise InputError("the data hold a single class: nothing to classify")
    layer_sizes = _layer_sizes(model, hidden, sizes, X_tr.shape[1], n_classes)
    with _torch_single_thread(seed):
        module = build_model(reg, model, layer_sizes, strength).to(device)
        history = _fit(reg, module, X_tr, y_tr, strength=strength, target=target,
                       epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device,
                       progress=progress)
        net = export(reg, module, model, layer_sizes, strength)
        gen = torch.Generator().manual_seed(seed + 1)
        estimate = _own_estimate(reg, module, net, torch.as_tensor(X_tr), strength,
                                 target, gen)
    acc_tr, loss_tr = _accuracy(net, X_tr, y_tr)
    acc_te, loss_te = _accuracy(net, X_te, y_te)
    pred = np.argmax(net(X_te).reshape(len(X_te), -1), axis=1)
    extras: dict[str, np.ndarray] = {"X": X_te, "y": y_te.astype(np.float64)}
    correct = np.flatnonzero(pred == y_te)
    if correct.size:
        extras["center"] = X_te[correct[0]]
    info: dict[str, Any] = {
        "regulariser": reg.name, "strength": strength, "strength_means": reg.strength,
        "reference": reg.reference, "model": model, "sizes": layer_sizes, "data": data_name,
        "n_train": len(X_tr), "n_test": len(X_te), "epochs": epochs, "lr": lr,
        "batch_size": batch_size, "seed": seed, "device": device,
        "train_accuracy": acc_tr, "test_accuracy": acc_te, "train_loss": loss_tr,
        "test_loss": loss_te, "losses": history, "estimate": estimate,
        "design_bound": strength if reg.strength == regs.BUDGET else None,
        "design_norm": reg.norm if reg.strength == regs.BUDGET else None,
    }
    if reg.kind == "penalty" and reg.name != "weight-decay":
        info["target"] = float(target)
    run = TrainingRun(net, extras, info)
    if out is not None:
        write_run(run, out)
    return run


def _fit(reg: regs.Regulariser, module: Any, X: np.ndarray, y: np.ndarray, *,
         strength: float, target: float, epochs: int, lr: float, batch_size: int, seed: int,
         device: str, progress: bool) -> list[dict[str, float]]:
    """Adam on cross-entropy + strength * penalty; constraints after each step. Returns
    each epoch's mean loss and penalty."""
    import sys

    import torch
    from tqdm import tqdm

    Xt = torch.as_tensor(X, dtype=torch.float64, device=device)
    yt = torch.as_tensor(y, dtype=torch.long, device=device)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    ce = torch.nn.CrossEntropyLoss()
    radius = _layer_radius(strength, len(_linears(module))) if reg.name.startswith(
        "projection-") else None
    history: list[dict[str, float]] = []
    bar = tqdm(range(epochs), desc=f"train {reg.name}", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, leave=False)
    module.train()
    for epoch in bar:
        order = torch.randperm(len(Xt), generator=gen).to(device)
        sums = [0.0, 0.0]
        for start in range(0, len(Xt), batch_size):
            idx = order[start:start + batch_size]
            xb = Xt[idx]
            opt.zero_grad()
            loss = ce(module(xb), yt[idx])
            pen = _penalty(reg, module, xb, target, gen) if reg.kind == "penalty" else None
            total = loss if pen is None else loss + strength * pen
            total.backward()
            opt.step()
            with torch.no_grad():
                if reg.name == "clipping":
                    regs.clip_weights(module, strength)
                elif radius is not None:
                    _project(module, reg.norm, radius)
            sums[0] += float(loss.detach()) * len(idx)
            sums[1] += (0.0 if pen is None else float(pen.detach())) * len(idx)
        history.append({"epoch": epoch + 1, "loss": sums[0] / len(Xt),
                        "penalty": sums[1] / len(Xt)})
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", refresh=False)
    bar.close()
    module.eval()
    return history


def _accuracy(net: Network, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the exported network."""
    logits = net(X).reshape(len(X), -1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return (float(np.mean(np.argmax(logits, axis=1) == y)),
            float(-np.mean(logp[np.arange(len(y)), y])))


def write_run(run: TrainingRun, out: str | Path) -> tuple[Path, Path]:
    """OUT (the canonical .npz, io.save) and OUT with suffix .json (the run)."""
    import json

    from ..bound import to_jsonable
    from ..io import save

    path = Path(out)
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path}: the trained network is written as .npz")
    save(run.net, path, **run.extras)
    info = path.with_suffix(".json")
    info.write_text(json.dumps(to_jsonable(run.info), indent=1) + "\n")
    return path, info
