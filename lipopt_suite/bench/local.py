"""Benchmark of the anchored local bound (`local`): the digits CNN and a VGG-like net.

Goals: under 1 s for the digits CNN and under 10 s for a VGG-like 4-convolution net on
32x32x3 inputs, on 2 CPU cores (Avant & Morgansen report 0.1 s for an MNIST net and 1 s for a
CIFAR-10 net on a GTX 1080 Ti). Baselines measured in the same run: AutoLip on the same net
(the global bound, and its time) and the paper's plain block product without merging stable
layers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

TITLE = "local bound (Avant & Morgansen) on the digits CNN and a VGG-like 32x32 net"

DIGITS_CNN = Path("problems/digits/digits_cnn.npz")
# Radii of the timed runs: small (most units stable) and moderate, in units of the input.
DIGITS_RADII = (0.05, 0.5)
VGG_RADII = (0.05, 0.5)


def vgg_like(hw: int = 32, channels: tuple[int, int, int, int] = (16, 16, 32, 32),
             classes: int = 10, seed: int = 0) -> Any:
    """conv-relu-conv-relu-maxpool twice, then a linear layer: He-initialised random weights,
    3x3 convolutions with padding 1, 2x2 pooling."""
    from ..network import Activation, Affine, Conv2d, Flatten, MaxPool2d, Network

    rng = np.random.default_rng(seed)
    layers: list = []
    c, size = 3, hw
    for k, out_c in enumerate(channels):
        w = rng.standard_normal((out_c, c, 3, 3)) * np.sqrt(2.0 / (9 * c))
        layers += [Conv2d(w, 0.05 * rng.standard_normal(out_c), 1, 1), Activation("relu")]
        c = out_c
        if k % 2 == 1:
            layers.append(MaxPool2d(2, 2))
            size //= 2
    layers.append(Flatten())
    n = c * size * size
    layers.append(Affine(rng.standard_normal((classes, n)) * np.sqrt(1.0 / n),
                         0.05 * rng.standard_normal(classes)))
    return Network(tuple(layers), (3, hw, hw)).validate()


def _digits_cnn() -> tuple[Any, np.ndarray, str]:
    from ..harness.nets import random_cnn
    from ..io import load_problem

    if DIGITS_CNN.exists():
        net, extras = load_problem(DIGITS_CNN)
        if "center" in extras:
            return net, np.asarray(extras["center"], np.float64).reshape(-1), str(DIGITS_CNN)
        X = np.asarray(extras.get("X"), np.float64).reshape(-1, net.input_dim)
        return net, X[0], str(DIGITS_CNN)
    # stand-in of the same shape (random weights) until the trained net is shipped
    net = random_cnn((1, 8, 8), (8, 16), 10, seed=0)
    return net, np.random.default_rng(0).random(64) * 16, "random_cnn(1x8x8; 8,16) stand-in"


def _time_local(net: Any, center: np.ndarray, eps: float, **options: Any) -> dict[str, Any]:
    from ..bound import Domain
    from ..registry import estimate

    dom = Domain.ball(center, eps, anchored=True)
    t0 = time.perf_counter()
    b = estimate(net, "local", domain=dom, **options)
    return {"seconds": time.perf_counter() - t0, "value": b.value, "certified": b.certified,
            "blocks": [blk["how"] for blk in b.details["blocks"]]}


def _fresh(net: Any) -> Any:
    """The same network with empty caches, so that a timing includes all of its work."""
    from ..network import Network

    return Network(net.layers, net.input_shape)


def _case(name: str, net: Any, center: np.ndarray, radii: tuple[float, ...], goal: float
          ) -> dict[str, Any]:
    from ..registry import estimate

    t0 = time.perf_counter()
    auto = estimate(_fresh(net), "autolip")
    auto_s = time.perf_counter() - t0
    out: dict[str, Any] = {"net": name, "goal_seconds": goal,
                           "autolip": {"value": auto.value, "seconds": auto_s}, "radii": {}}
    for eps in radii:
        # each run starts cold: nominal pass, layer caps and sparse matrices included
        merged = _time_local(_fresh(net), center, eps)
        plain = _time_local(_fresh(net), center, eps, merge=False)
        out["radii"][str(eps)] = {"local": merged, "paper_product": plain,
                                  "ratio_to_autolip": merged["value"] / auto.value}
    worst = max(r["local"]["seconds"] for r in out["radii"].values())
    out["local_seconds_max"] = worst
    out["meets_goal"] = worst <= goal
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Time `local` from a cold start on each net and radius, beside AutoLip (baseline: the
    global bound and its time) and the paper's block product without merging."""
    net, center, name = _digits_cnn()
    figures: dict[str, Any] = {"digits_cnn": _case(name, net, center, DIGITS_RADII, 1.0)}
    hw = 16 if quick else 32
    vgg = vgg_like(hw)
    x0 = np.random.default_rng(1).random(3 * hw * hw)
    figures["vgg_like"] = _case(f"vgg_like {hw}x{hw}x3 (16,16,32,32)", vgg, x0,
                                VGG_RADII[:1] if quick else VGG_RADII, 10.0)
    return figures
