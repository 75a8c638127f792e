"""The CNN and AlexNet tables of Scaman & Virmaux (NeurIPS 2018, Section 7), reproduced.

* `train_scaman_cnn(layers)`: the "MNIST-CNNs of various size" (4, 5, 7, 10 layers), here
  on scikit-learn's 8x8 digits (the data the suite already ships, no download): `layers - 1`
  convolutions 3x3 (padding 1, CNN_CHANNELS channels) with ReLU, then a linear layer onto
  the 10 classes, trained seeded with Adam in float64 on one thread (seconds each). The
  paper does not give its CNNs' widths; ours are narrow so that training stays in seconds.
* `cnn_markdown(analysis)`: our CNN table (AutoLip, Greedy SeqLip, their ratio, the Dataset
  and Annealing lower bounds) beside the published one, from a results directory's records
  of the `scaman2018-cnn` family, plus the AlexNet row when given.
* `alexnet_row()`: AutoLip and Greedy SeqLip of an AlexNet-shaped network (torchvision's
  architecture on 3x224x224, seeded random weights: no download) and their ratio, beside
  the published 3.62e7 and 5.45e6 (of the trained AlexNet, so only the ratio compares).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..io import from_torch
from .tables import fmt, md_table
from .train import Trained, _digits_extras, _torch_single_thread, digits_data, fit

CNN_LAYERS = (4, 5, 7, 10)
CNN_CHANNELS = 8
CNN_EPOCHS = 8
CNN_FAMILY = "scaman2018-cnn"
# Scaman & Virmaux, NeurIPS 2018, CNN table (their MNIST CNNs, l2 norm).
CNN_PUBLISHED: dict[int, dict[str, float]] = {
    4: {"autolip": 174.0, "seqlip-greedy": 86.0, "ratio": 2.0, "data": 12.64,
        "annealing": 25.5},
    5: {"autolip": 790.1, "seqlip-greedy": 335.0, "ratio": 2.4, "data": 16.79,
        "annealing": 22.2},
    7: {"autolip": 12141.0, "seqlip-greedy": 3629.0, "ratio": 3.3, "data": 31.22,
        "annealing": 43.6},
    10: {"autolip": 4.5e6, "seqlip-greedy": 8.2e5, "ratio": 5.4, "data": 38.26,
         "annealing": 107.8},
}
ALEXNET_PUBLISHED = {"autolip": 3.62e7, "seqlip-greedy": 5.45e6}
CNN_COLUMNS = ("autolip", "seqlip-greedy", "data", "annealing")
CNN_HEADERS = ("AutoLip", "Greedy SeqLip", "Ratio", "Dataset", "Annealing")


def scaman_cnn_module(layers: int, channels: int = CNN_CHANNELS) -> Any:
    """`layers - 1` 3x3 convolutions (padding 1) with ReLU on 1x8x8 inputs, then flatten and
    a linear layer onto 10 classes: `layers` linear layers in all, float64."""
    from torch import nn

    from ..errors import InputError

    if layers < 2:
        raise InputError(f"a CNN of this family needs at least 2 layers, got {layers}")
    mods: list[Any] = []
    c = 1
    for _ in range(layers - 1):
        mods += [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU()]
        c = channels
    mods += [nn.Flatten(), nn.Linear(c * 64, 10)]
    return nn.Sequential(*mods).double()


def train_scaman_cnn(layers: int, *, channels: int = CNN_CHANNELS, epochs: int = CNN_EPOCHS,
                     lr: float = 3e-3, seed: int = 0) -> Trained:
    """A CNN of `layers` layers trained on the 8x8 digits; X = the 300 test images (flat)."""
    X_tr, y_tr, X_te, y_te = digits_data(seed)
    with _torch_single_thread(seed + 100 * layers):
        model = scaman_cnn_module(layers, channels)
        loss = fit(model, X_tr.reshape(-1, 1, 8, 8), y_tr, loss="ce", epochs=epochs, lr=lr,
                   seed=seed)
        extras, info = _digits_extras(model, X_te, y_te, (1, 8, 8))
    return Trained(from_torch(model, (1, 8, 8)), extras, {"train_loss": loss, **info})


# ------------------------------------------------------------------------------ AlexNet
def alexnet_row(seed: int = 0, *, width: float = 1.0, top_k: int = 64) -> dict[str, Any]:
    """AutoLip (certified) and Greedy SeqLip (an estimate, `top_k` singular vectors per
    block) of the seeded AlexNet-shaped network, with their ratio and the seconds each took."""
    from ..registry import estimate
    from .nets import alexnet_module

    net = from_torch(alexnet_module(seed=seed, width=width), (3, 224, 224))
    out: dict[str, Any] = {"width": width, "seed": seed, "top_k": top_k}
    for name, opts in (("autolip", {}), ("seqlip-greedy", {"top_k": top_k})):
        start = time.perf_counter()
        b = estimate(net, name, **opts)
        out[name] = b.value
        out[f"{name}_seconds"] = time.perf_counter() - start
    out["ratio"] = out["autolip"] / out["seqlip-greedy"]
    return out


ALEXNET_FILE = "alexnet.json"


def write_alexnet_row(out: Path) -> Path:
    """`alexnet_row()` into out/alexnet.json, where the report's CNN table finds it (the
    network is too large to ship as a problem: 61 M weights)."""
    import json

    from ..bound import to_jsonable

    path = Path(out) / ALEXNET_FILE
    path.write_text(json.dumps(to_jsonable(alexnet_row()), indent=1) + "\n")
    return path


# ------------------------------------------------------------------------------ table
def cnn_markdown(a: Any, alexnet: dict[str, Any] | None = None) -> str | None:
    """Our CNN table beside the published one (None without records of the family), from a
    report `Analysis` (harness/report.py `analyse`); `alexnet` is an `alexnet_row()`."""
    groups = {int(g.x): g for g in a.groups if g.family == CNN_FAMILY and g.norm == "2"
              and g.radius is None and g.x is not None}
    if not groups and alexnet is None:
        return None

    def value(L: int, m: str) -> float | None:
        g = groups.get(L)
        r = next((r for r in g.rows if r.method == m and r.usable), None) if g else None
        return r.value if r else None

    lines = ["# Scaman & Virmaux 2018, CNN table: ours beside the published one", "",
             "Upper bounds: AutoLip (certified), Greedy SeqLip (an estimate); Ratio = "
             "AutoLip / Greedy SeqLip; lower bounds: Dataset (largest gradient norm over the "
             "test images, certified by a secant), Annealing. l2 norm. Ours are "
             f"{CNN_CHANNELS}-channel CNNs on scikit-learn's 8x8 digits, the paper's are "
             "MNIST CNNs of unpublished widths: the values differ, the growth of the ratio "
             "with depth is what compares.", "", "## This run", ""]
    rows = []
    for L in CNN_LAYERS:
        v = {m: value(L, m) for m in CNN_COLUMNS}
        ratio = (v["autolip"] / v["seqlip-greedy"] if v["autolip"] and v["seqlip-greedy"]
                 else None)
        rows.append([str(L), fmt(v["autolip"]), fmt(v["seqlip-greedy"]) + "*",
                     fmt(ratio), fmt(v["data"]), fmt(v["annealing"])])
    lines += md_table(("# layers",) + CNN_HEADERS, rows)
    lines += ["", "## Published (Scaman & Virmaux, NeurIPS 2018)", ""]
    lines += md_table(("# layers",) + CNN_HEADERS, [
        [str(L)] + [fmt(CNN_PUBLISHED[L][m]) for m in ("autolip", "seqlip-greedy", "ratio",
                                                        "data", "annealing")]
        for L in CNN_LAYERS])
    if alexnet is not None:
        lines += ["", "## AlexNet", "",
                  f"Ours: torchvision's AlexNet architecture on 3x224x224 with seeded random "
                  f"weights (seed {alexnet['seed']}, width x{alexnet['width']:g}); the "
                  "paper's: the trained AlexNet. Greedy SeqLip with "
                  f"{alexnet['top_k']} singular vectors per block.", ""]
        lines += md_table(("", "AutoLip", "Greedy SeqLip", "Ratio"), [
            ["ours", fmt(alexnet["autolip"]), fmt(alexnet["seqlip-greedy"]) + "*",
             fmt(alexnet["ratio"])],
            ["published", fmt(ALEXNET_PUBLISHED["autolip"]),
             fmt(ALEXNET_PUBLISHED["seqlip-greedy"]),
             fmt(ALEXNET_PUBLISHED["autolip"] / ALEXNET_PUBLISHED["seqlip-greedy"])]])
    return "\n".join(lines) + "\n"
