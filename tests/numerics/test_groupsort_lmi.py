"""The GroupSort LipSDP matrix inequality and its certificate, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Network, estimate
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.numerics.groupsort_lmi import (
    certify_groupsort,
    lmi_matrix,
    network_sort_data,
)
from lipopt_suite.numerics.lmi import certify_multipliers, network_data

# regions computes the exact constant from float64 SVDs (rounding ~1e-15)
EXACT_RTOL = 1e-9


def sort_net(sizes, group_size, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    ws = [scale * rng.standard_normal((sizes[k + 1], sizes[k])) / np.sqrt(sizes[k])
          for k in range(len(sizes) - 1)]
    bs = [0.5 * rng.standard_normal(sizes[k + 1]) for k in range(len(sizes) - 1)]
    return Network.from_mlp(ws, bs, "groupsort", group_size=group_size)


def test_maxmin_is_a_comparator_with_a_bypass():
    # x -> MaxMin(x) -> identity: v = (a, b, r), min = a - r, max = b + r
    data = network_sort_data(Network.from_mlp([np.eye(2), np.eye(2)], None, "maxmin"))
    assert data.dim == 3 and [s.what for s in data.stages] == ["sort"]
    np.testing.assert_array_equal(data.stages[0].B, [[1.0, -1.0, 0.0]])
    np.testing.assert_array_equal(data.C, [[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]])
    # with t = 1 the LMI is exactly diag(1 - rho, 1 - rho, 0) on top of M(0): 1-Lipschitz
    X, _ = lmi_matrix(data, [np.ones(1)])
    np.testing.assert_array_equal(X, np.diag([1.0, 1.0, 0.0]))


def test_one_maxmin_layer_certifies_its_weight_norms():
    rng = np.random.default_rng(0)
    W0, W1 = np.linalg.qr(rng.standard_normal((4, 4)))[0], np.eye(4)
    net = Network.from_mlp([W0, W1], None, "maxmin")
    b = estimate(net, "lipsdp-groupsort")
    assert b.certified and 1.0 <= b.value <= 1.0 + 1e-6


@pytest.mark.parametrize("seed", range(6))
def test_any_multipliers_certify_at_least_the_exact_constant(seed):
    from lipopt_suite.solvers.lipsdp_groupsort import solve

    rng = np.random.default_rng(seed)
    sizes = [2, 4, 6, 1] if seed % 2 else [3, 6, 4, 2]
    gs = [2, 3] if seed % 2 else [3, 2]
    net = sort_net(sizes, gs, seed)
    data = network_sort_data(net)
    exact = estimate(net, "regions").value
    _, _, T_opt, _ = solve(data, "CLARABEL")
    best = certify_groupsort(data, T_opt)
    assert best.certified and best.value >= exact * (1 - EXACT_RTOL)
    certified = 0
    for _ in range(20):
        # the solver's multipliers scaled up (which keeps the hidden block of -M positive
        # definite: it grows by (c - 1) (C^T C)_hh) and each entry perturbed
        c = rng.uniform(1.5, 4.0)
        T = [c * t * np.exp(rng.uniform(-0.2, 0.2, t.size)) for t in T_opt]
        cert = certify_groupsort(data, T)
        if cert.certified:
            certified += 1
            assert cert.value >= exact * (1 - EXACT_RTOL)
            assert cert.value >= best.value * (1 - 1e-6)  # the optimum is (nearly) least
    assert certified >= 3  # the check above ran


def test_zero_multipliers_fail_when_the_hidden_block_is_not_negative():
    net = sort_net([2, 4, 1], 2, 0)
    data = network_sort_data(net)
    cert = certify_groupsort(data, [np.zeros(data.stages[0].size)])
    assert not cert.certified and "not negative definite" in cert.reason


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_elementwise_stages_agree_with_the_lipsdp_certificate(activation):
    # the same multipliers, two formulations of one LMI: the values agree to rounding
    net = random_mlp([3, 5, 4, 2], seed=3, activation=activation)
    rng = np.random.default_rng(1)
    data, classic = network_sort_data(net), network_data(net)
    from lipopt_suite.numerics.lmi import eclipse_multipliers

    T = eclipse_multipliers(classic)
    T = [t * (1 + 0.1 * rng.random(t.size)) for t in T]
    a, b = certify_groupsort(data, T), certify_multipliers(classic, T)
    assert a.certified and b.certified
    assert a.value == pytest.approx(b.value, rel=1e-7)


def test_weight_product_errors_are_bounded_and_grow_with_depth():
    net = sort_net([3, 6, 6, 6, 1], 2, 5, scale=3.0)
    data = network_sort_data(net)
    assert all(np.all(s.R >= 0) for s in data.stages)
    # the first stage reads the input directly: its entries are single products W x
    assert float(data.stages[-1].R.max()) > float(data.stages[0].R.max()) > 0
    assert float(data.RC.max()) < 1e-12 * float(np.abs(data.C).max() + 1)
