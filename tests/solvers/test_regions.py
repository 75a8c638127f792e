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


# ------------------------------------------------------------------ GroupSort
def _sort_net(sizes, group_size, seed):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((sizes[k + 1], sizes[k])) for k in range(len(sizes) - 1)]
    bs = [0.5 * rng.standard_normal(sizes[k + 1]) for k in range(len(sizes) - 1)]
    return Network.from_mlp(ws, bs, "groupsort", group_size=group_size)


def test_one_maxmin_pair_has_two_regions_and_the_swap_as_jacobian():
    net = Network.from_mlp([np.eye(2), np.eye(2)], None, "maxmin")
    rs = enumerate_regions(net)
    assert len(rs.regions) == 2 and rs.complete
    jacobians = sorted(tuple(r.jacobian.ravel()) for r in rs.regions)
    assert jacobians == [(0.0, 1.0, 1.0, 0.0), (1.0, 0.0, 0.0, 1.0)]
    assert estimate(net, "regions").value == pytest.approx(1.0, rel=1e-12)


def test_a_sort_of_three_has_six_orderings():
    # three independent inputs sorted: every ordering is a region (3! = 6)
    net = Network.from_mlp([np.eye(3), np.eye(3)], None, "groupsort", group_size=3)
    assert len(enumerate_regions(net).regions) == 6


@pytest.mark.parametrize("sizes, group_size, seed", [
    ([2, 4, 4, 1], 2, 0), ([3, 6, 6, 2], 3, 1), ([2, 4, 2], 4, 2), ([3, 6, 4, 2], [3, 2], 3)])
def test_groupsort_exact_value_matches_dense_sampling(sizes, group_size, seed):
    net = _sort_net(sizes, group_size, seed)
    exact = estimate(net, "regions")
    assert exact.kind == "exact"
    X = np.random.default_rng(seed).standard_normal((20000, sizes[0])) * 3
    sampled = jacobian_norms(batch_jacobians(net, X), "2").max().item()
    # every sampled Jacobian is some region's, and the largest region is real: its interior
    # witness point has that Jacobian
    assert sampled <= exact.value * (1 + 1e-9)
    at_witness = jacobian_norms(batch_jacobians(net, exact.details["witness"]["x"][None]), "2")
    assert at_witness.item() == pytest.approx(exact.value, rel=1e-9)


def test_groupsort_over_a_box_is_at_most_the_global_value():
    net = _sort_net([2, 4, 4, 1], 2, 4)
    box = Domain.box(np.zeros(2), 0.2)
    local = estimate(net, "regions", domain=box)
    assert local.kind == "exact"
    assert local.value <= estimate(net, "regions").value * (1 + 1e-12)


def test_groupsort_comparators_count_against_the_unit_limit():
    net = _sort_net([2, 8, 1], 2, 0)  # 4 comparators
    with pytest.raises(UnsupportedError, match="comparators"):
        estimate(net, "regions", max_hidden_units=3)
    assert estimate(net, "regions", max_hidden_units=4).kind == "exact"
