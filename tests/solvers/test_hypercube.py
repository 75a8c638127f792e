"""hypercube against brute force (region enumeration, vertex enumeration), its witnesses, its
limits, and the Max-Cut -> LIP-CST reduction."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lipopt_suite import Network, UnsupportedError, estimate
from lipopt_suite.core.lower import batch_jacobians
from lipopt_suite.core.patterns import max_pattern_norm
from lipopt_suite.harness.nets import lipmip_depth, random_mlp
from lipopt_suite.solvers.hypercube import max_reachable_pattern_norm

# Both sides are float64 spectral norms of the same Jacobian (error ~1e-15 relative); the
# acceptance criterion of the exact methods is 1e-9.
EXACT_RTOL = 1e-9
# A gradient taken by autograd at an interior point equals the region's Jacobian up to
# float64 rounding.
GRADIENT_RTOL = 1e-12


def one_hidden(seed: int) -> Network:
    rng = np.random.default_rng(500 + seed)
    n = int(rng.integers(2, 7))
    # half the nets have l <= n (every pattern reachable), half l > n (regions only)
    width = int(rng.integers(1, n + 1)) if seed % 2 else int(rng.integers(n + 1, 15))
    return random_mlp([n, width, int(rng.integers(1, 4))], seed=seed)


@pytest.mark.parametrize("seed", range(24))
def test_equals_region_enumeration(seed):
    net = one_hidden(seed)
    exact = estimate(net, "regions")
    got = estimate(net, "hypercube")
    assert got.kind == "exact" and got.certified
    assert got.value == pytest.approx(exact.value, rel=EXACT_RTOL)
    width, n = net.mlp()[0][0].shape
    assert got.details["reachable"] == ("all" if width <= n else "regions")


def test_degenerate_neurons_equal_region_enumeration():
    # a repeated hyperplane, a neuron with a zero row (constant) and one with a zero output
    rng = np.random.default_rng(3)
    W1 = rng.standard_normal((6, 3))
    W1[1] = 2.0 * W1[0]
    W1[4] = 0.0
    b1 = rng.standard_normal(6)
    b1[1] = 2.0 * b1[0]
    W2 = rng.standard_normal((2, 6))
    W2[:, 5] = 0.0
    net = Network.from_mlp([W1, W2], [b1, np.zeros(2)])
    assert estimate(net, "hypercube").value == pytest.approx(
        estimate(net, "regions").value, rel=EXACT_RTOL)


@pytest.mark.parametrize("width, outputs", [(12, 1), (11, 3)])
def test_full_rank_equals_vertex_enumeration(width, outputs):
    net = random_mlp([width, width, outputs], seed=width)
    (M1, M2), _, _ = net.mlp()
    brute = max_pattern_norm(M2, M1)
    got = estimate(net, "hypercube")
    assert got.details["reachable"] == "all"
    assert got.value == pytest.approx(brute.lower, rel=EXACT_RTOL)


@pytest.mark.parametrize("seed", [0, 3])
def test_witness_point_realises_the_value(seed):
    net = one_hidden(seed)
    b = estimate(net, "hypercube")
    x = np.asarray(b.details["witness"]["x"])
    (M1, _), (b1, _), _ = net.mlp()
    pattern = (M1 @ x + b1 > 0).astype(int)
    assert np.array_equal(pattern, np.asarray(b.details["witness"]["pattern"]))
    J = batch_jacobians(net, x[None]).numpy()[0]
    assert np.linalg.norm(J, 2) == pytest.approx(b.value, rel=GRADIENT_RTOL)


def test_linear_network_is_its_spectral_norm():
    W = np.random.default_rng(1).standard_normal((4, 3))
    b = estimate(Network.from_mlp([W], [np.ones(4)]), "hypercube")
    assert b.kind == "exact" and b.value == pytest.approx(np.linalg.norm(W, 2), rel=1e-12)


def test_refuses_deep_and_non_relu_nets():
    with pytest.raises(UnsupportedError, match="one-hidden-layer"):
        estimate(lipmip_depth(2), "hypercube")
    with pytest.raises(UnsupportedError):
        estimate(random_mlp([3, 4, 1], activation="tanh"), "hypercube")
    with pytest.raises(UnsupportedError):
        estimate(random_mlp([3, 4, 1]), "hypercube", norm="inf")


def test_oversized_request_is_refused_or_bounded():
    net = random_mlp([60, 60, 1], seed=0)
    with pytest.raises(UnsupportedError, match="time_limit"):
        estimate(net, "hypercube")
    start = time.perf_counter()
    b = estimate(net, "hypercube", time_limit=1.0)
    assert time.perf_counter() - start < 10
    assert b.kind == "upper" and b.status == "timeout" and b.certified
    # the proven bound is at least the incumbent and any gradient norm
    (M1, M2), (b1, _), _ = net.mlp()
    X = np.random.default_rng(0).standard_normal((200, 60))
    gates = (M1 @ X.T + b1[:, None]) > 0
    grads = np.linalg.norm(M1.T @ (gates * M2.T), axis=0)
    assert b.value >= b.details["incumbent"] >= grads.max() * (1 - EXACT_RTOL)


def test_many_neurons_in_low_dimension_are_exact():
    # 60 hyperplanes in the plane cut at most 1 + 60 + 1770 regions: no refusal
    net = random_mlp([2, 60, 1], seed=2)
    b = estimate(net, "hypercube")
    assert b.kind == "exact" and b.details["reachable"] == "regions"
    X = np.random.default_rng(0).standard_normal((2000, 2)) * 3
    sampled = np.linalg.norm(batch_jacobians(net, X).numpy()[:, 0], axis=1).max()
    assert sampled <= b.value * (1 + EXACT_RTOL)


def test_time_limited_bound_is_above_the_exact_value():
    (M1, M2), (b1, _), _ = random_mlp([18, 18, 2], seed=4).mlp()
    exact = max_reachable_pattern_norm(M1, b1, M2)
    early = max_reachable_pattern_norm(M1, b1, M2, time_limit=1e-4)
    assert exact.complete and not early.complete
    assert early.upper >= exact.lower * (1 - EXACT_RTOL)
    assert early.lower <= exact.lower * (1 + EXACT_RTOL)





@pytest.mark.parametrize("left, width", [(0.0, 1e-9), (1000.0, 1e-6)])
def test_a_region_too_thin_to_resolve_leaves_a_proven_upper_bound(left, width):
    net = Network.from_mlp([np.array([[1.0], [1.0]]), np.array([[1.0, -1.0]])],
                           [np.array([-left, -left - width]), np.zeros(1)])
    b = estimate(net, "hypercube")
    # the true constant is 1 (slope 1 on the thin region): never an exact 0
    assert b.kind == "upper" and b.status == "inaccurate" and b.value >= 1.0
