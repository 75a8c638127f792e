"""Exact constants by region enumeration: analytic cases and sampling checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt_suite import Domain, Network, UnsupportedError, estimate
from lipopt_suite.core.lower import batch_jacobians, jacobian_norms
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.solvers.regions import enumerate_regions

TWO_UNITS = Network.from_mlp([np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[1.0, -1.0]])])


@pytest.mark.parametrize("norm, exact", [("2", math.sqrt(2)), ("inf", 2.0), ("1", 1.0)])
def test_relu_difference(norm, exact):
    b = estimate(TWO_UNITS, "regions", norm=norm)
    assert b.kind == "exact" and b.value == pytest.approx(exact, rel=1e-12)
    assert b.details["regions"] == 4


def test_linear_network_has_one_region():
    W = np.random.default_rng(0).standard_normal((3, 2))
    b = estimate(Network.from_mlp([W]), "regions")
    assert b.details["regions"] == 1
    assert b.value == pytest.approx(np.linalg.norm(W, 2), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_every_sampled_pattern_is_a_found_region(seed):
    net = random_mlp([2, 6, 5, 1], seed=seed)
    rs = enumerate_regions(net)
    found = {tuple(np.concatenate(r.slopes).astype(int)) for r in rs.regions}
    X = np.random.default_rng(seed).standard_normal((3000, 2)) * 5
    ws, bs, _ = net.mlp()
    for x in X:
        h, pattern = x, []
        for W, b in zip(ws[:-1], bs[:-1]):
            z = W @ h + b
            pattern.append(z > 0)
            h = np.maximum(z, 0)
        assert tuple(np.concatenate(pattern).astype(int)) in found


def test_box_domain_is_at_most_global_and_at_least_sampled():
    net = random_mlp([2, 8, 6, 2], seed=11)
    box = Domain.box([0.3, -0.2], 0.5)
    local = estimate(net, "regions", domain=box)
    glob = estimate(net, "regions")
    assert local.value <= glob.value * (1 + 1e-12)
    X = box.center + (np.random.default_rng(0).random((4000, 2)) - 0.5)
    sampled = jacobian_norms(batch_jacobians(net, X), "2").max().item()
    assert sampled <= local.value * (1 + 1e-9)


def test_refuses_large_inputs_and_tanh():
    with pytest.raises(UnsupportedError, match="input dimension"):
        estimate(random_mlp([10, 4, 1]), "regions")
    with pytest.raises(UnsupportedError, match="tanh"):
        estimate(random_mlp([2, 4, 1], activation="tanh"), "regions")


def test_region_limit_gives_a_lower_bound():
    net = random_mlp([3, 8, 8, 1], seed=2)
    b = estimate(net, "regions", max_regions=5)
    full = estimate(net, "regions")
    assert b.kind == "lower" and b.status == "timeout"
    assert b.value <= full.value


def thin_bump(left: float, width: float) -> Network:
    """f(x) = relu(x - left) - relu(x - left - width): slope 1 on a region `width` wide."""
    return Network.from_mlp([np.array([[1.0], [1.0]]), np.array([[1.0, -1.0]])],
                            [np.array([-left, -left - width]), np.zeros(1)])


@pytest.mark.parametrize("left, width", [(0.0, 1e-9), (1000.0, 1e-6)])
def test_a_region_too_thin_to_resolve_is_never_dropped_silently(left, width):
    # the slope-1 region is real but below the resolution of the full-dimension test
    b = estimate(thin_bump(left, width), "regions")
    assert b.kind == "lower" and b.status == "inaccurate" and b.certified
    assert b.value <= 1.0 and b.details["slivers"] >= 1


def test_a_thin_region_above_the_resolution_is_found():
    b = estimate(thin_bump(0.0, 1e-6), "regions")
    assert b.kind == "exact" and b.value == pytest.approx(1.0, rel=1e-12)
