"""Soundness against brute force: on seeded tiny ReLU and GroupSort/MaxMin nets, and tiny
CNNs with and without max pooling (through their exact unrolling), every certified lower
bound is at most the exact constant (every full-dimensional linear region enumerated) and
every certified upper bound at least it, for every registered method that applies."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from lipopt_suite import Network, UnsupportedError, estimate
from lipopt_suite.harness.nets import random_mlp, residual_mlp
from lipopt_suite.network import Activation, Affine, Conv2d, Flatten, MaxPool2d
from lipopt_suite.registry import check_applicable, methods

# Exact values and bounds are float64 computations with rounding ~1e-15; the secant
# witnesses of lower bounds carry a 1e-9 margin. Crossings beyond this are real.
SANDWICH_RTOL = 1e-9
# Cheaper search settings for the lower bounds (soundness does not depend on effort).
FAST = {"annealing": {"maxfun": 60}, "random": {"samples": 200},
        "gradient-ascent": {"restarts": 4, "steps": 60}, "grid": {"resolution": 60},
        "mip": {"time_limit": 30}, "hypercube": {"time_limit": 30},
        "bab": {"time_limit": 30}}
SEEDS = range(32)


@functools.cache
def tiny_net(seed: int) -> Network:
    """One network object per seed, so both norms reuse its cached region enumeration."""
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(2, 5))
    hidden = [int(rng.integers(2, 9)) for _ in range(int(rng.integers(1, 4)))]
    return random_mlp([n] + hidden + [int(rng.integers(1, 4))], seed=seed)


def bounds_for(net: Network, norm: str, fast: dict | None = None) -> list:
    fast = FAST if fast is None else fast
    out = []
    for info in methods():
        if info.kind == "estimate" or info.domain == "required" or info.needs:
            continue
        if norm not in info.norms:
            continue
        try:
            check_applicable(info, net, norm, None)
            out.append(estimate(net, info.name, norm=norm, **fast.get(info.name, {})))
        except UnsupportedError:
            continue
    return out


def assert_sandwich(net: Network, norm: str, exact: float, fast: dict | None = None
                    ) -> list[str]:
    checked = []
    for b in bounds_for(net, norm, fast):
        if not b.certified or b.status != "ok" or not math.isfinite(b.value):
            continue
        if b.kind == "lower":
            assert b.value <= exact * (1 + SANDWICH_RTOL), (b.method, b.value, exact)
        elif b.kind == "upper":
            assert b.value >= exact * (1 - SANDWICH_RTOL), (b.method, b.value, exact)
        elif b.kind == "exact":
            assert b.value == pytest.approx(exact, rel=1e-6), (b.method, b.value, exact)
        checked.append(b.method)
    assert len(checked) >= 5
    return checked


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_sandwich_on_random_nets(seed, norm):
    net = tiny_net(seed)
    exact = estimate(net, "regions", norm=norm)
    assert exact.kind == "exact"
    assert_sandwich(net, norm, exact.value)


@functools.cache
def tiny_sort_net(seed: int) -> Network:
    """A seeded MLP with GroupSort layers: widths 2, 4 or 6, groups of 2 (MaxMin) or of a
    larger size dividing the width."""
    rng = np.random.default_rng(5000 + seed)
    n = int(rng.integers(2, 4))
    widths = [int(rng.choice([2, 4, 6])) for _ in range(int(rng.integers(1, 3)))]
    sizes = [n] + widths + [int(rng.integers(1, 3))]
    groups = [int(rng.choice([g for g in (2, 3, 4) if w % g == 0])) for w in widths]
    ws = [rng.standard_normal((sizes[k + 1], sizes[k])) / np.sqrt(sizes[k])
          for k in range(len(sizes) - 1)]
    bs = [0.5 * rng.standard_normal(sizes[k + 1]) for k in range(len(sizes) - 1)]
    return Network.from_mlp(ws, bs, "groupsort", group_size=groups)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_sandwich_on_groupsort_nets(seed, norm):
    net = tiny_sort_net(seed)
    exact = estimate(net, "regions", norm=norm)
    assert exact.kind == "exact"
    checked = assert_sandwich(net, norm, exact.value)
    assert {"autolip", "random", "region-walk", "bab"} <= set(checked)
    if norm == "2":
        assert "lipsdp-groupsort" in checked


def test_relu_difference_is_sqrt2():
    net = Network.from_mlp([np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[1.0, -1.0]])])
    assert estimate(net, "regions").value == pytest.approx(math.sqrt(2), rel=1e-12)
    assert_sandwich(net, "2", math.sqrt(2))
    assert_sandwich(net, "inf", 2.0)


@pytest.mark.parametrize("norm, order", [("2", 2), ("inf", np.inf), ("1", 1)])
def test_single_linear_layer_every_method_is_exact(norm, order):
    # rank one, so that even the Frobenius norm is the operator norm
    rng = np.random.default_rng(7)
    W = np.outer(rng.standard_normal(3), rng.standard_normal(2))
    net = Network.from_mlp([W], [np.ones(3)])
    exact = np.linalg.norm(W, ord=order)
    seen = 0
    for b in bounds_for(net, norm):
        if b.status != "ok":
            continue
        assert b.value == pytest.approx(exact, rel=1e-6), b.method
        seen += 1
    assert seen >= 4


# ------------------------------------------------- convolutional and residual networks
# The MLP-only methods take these through their exact unrolling (`unroll`); the truth is
# `regions` on that unrolled MLP (up to 9 inputs and 20 hidden units).
REGIONS_UNROLLED = {"max_input_dim": 9, "max_hidden_units": 64}
UNROLLED_METHODS = ("lipsdp-neuron", "lipsdp-layer", "seqlip", "liplt", "eclipse-fast",
                    "region-walk")
# the exact solvers stop early on the max-pool nets (their bounds stay certified)
FAST_CNN = {**FAST, "bab": {"time_limit": 4}, "mip": {"time_limit": 4}}


@functools.cache
def tiny_cnn(seed: int) -> Network:
    """conv 2x2 (1 -> 2 channels; stride 1, or stride 2 with padding 1) + ReLU + flatten +
    linear on a 1x3x3 input."""
    rng = np.random.default_rng(7000 + seed)
    stride, padding = ((1, 0), (2, 1))[seed % 2]
    conv = Conv2d(rng.standard_normal((2, 1, 2, 2)), 0.5 * rng.standard_normal(2), stride,
                  padding)
    out = int(rng.integers(1, 3))
    return Network((conv, Activation("relu"), Flatten(),
                    Affine(rng.standard_normal((out, 8)) / 2, rng.standard_normal(out))),
                   (1, 3, 3))


@functools.cache
def tiny_pool_net(seed: int) -> Network:
    """conv 2x2 (1 -> 2) + ReLU + 2x2 max pooling over all four positions (or the other
    way round) + linear on a 1x3x3 input: 20 hidden units once unrolled."""
    rng = np.random.default_rng(8000 + seed)
    conv = Conv2d(rng.standard_normal((2, 1, 2, 2)), 0.5 * rng.standard_normal(2))
    pool = (Activation("relu"), MaxPool2d(2, 1)) if seed % 2 else (MaxPool2d(2, 1),
                                                                   Activation("relu"))
    return Network((conv, *pool, Flatten(), Affine(rng.standard_normal((2, 2)),
                                                   rng.standard_normal(2))), (1, 3, 3))


@functools.cache
def tiny_residual(seed: int) -> Network:
    """y + V relu(W y + c), twice, then linear, on R^2 (a graph; widths 3)."""
    return residual_mlp(n=2, hidden=3, blocks=2, outputs=2, seed=seed)


@pytest.mark.parametrize("make, seed", [(tiny_cnn, s) for s in range(3)]
                         + [(tiny_pool_net, s) for s in (1, 2)]
                         + [(tiny_residual, s) for s in range(2)])
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_sandwich_on_unrolled_cnns(make, seed, norm):
    net = make(seed)
    exact = estimate(net, "regions", norm=norm, **REGIONS_UNROLLED)
    assert exact.kind == "exact" and "unrolled" in exact.details
    checked = assert_sandwich(net, norm, exact.value, FAST_CNN)
    assert {"autolip", "region-walk", "gradient-ascent"} <= set(checked)
    if make in (tiny_cnn, tiny_residual):
        assert "bab" in checked
    if norm == "2":
        assert set(UNROLLED_METHODS) <= set(checked)
