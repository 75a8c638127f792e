"""SeqLip: exact against brute force, refusal of large widths, greedy below exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lipopt_suite import UnsupportedError, estimate
from lipopt_suite.harness.nets import random_cnn, random_mlp

# SeqLip adds the proven defects of its floating-point SVDs (about 1e-13 relative here).
SEQLIP_RTOL = 1e-8


def brute_force_two_layer(net):
    (W1, W2), _, _ = net.mlp()
    return max(np.linalg.norm(W2 @ np.diag(s) @ W1, 2)
               for s in itertools.product([0.0, 1.0], repeat=W1.shape[0]))


@pytest.mark.parametrize("seed", range(8))
def test_seqlip_equals_brute_force_on_one_hidden_layer(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    hidden = int(rng.integers(1, n + 1))  # hidden width <= input dim: every pattern reachable
    net = random_mlp([n, hidden, int(rng.integers(1, 4))], seed=seed)
    b = estimate(net, "seqlip")
    exact = brute_force_two_layer(net)
    assert b.certified and b.kind == "upper"
    assert exact <= b.value <= exact * (1 + SEQLIP_RTOL)


def test_seqlip_refuses_wide_layers_and_names_greedy():
    with pytest.raises(UnsupportedError, match="seqlip-greedy"):
        estimate(random_mlp([2, 30, 2]), "seqlip")


def test_greedy_is_below_exact_and_seqlip_below_autolip():
    for seed in range(5):
        net = random_mlp([3, 8, 6, 2], seed=seed)
        exact = estimate(net, "seqlip").value
        greedy = estimate(net, "seqlip-greedy").value
        auto = estimate(net, "autolip").value
        assert greedy <= exact * (1 + SEQLIP_RTOL)
        assert exact <= auto * (1 + SEQLIP_RTOL)


def test_seqlip_with_leaky_relu_and_sigmoid():
    for act in ("leaky_relu", "sigmoid", "tanh"):
        net = random_mlp([3, 5, 4, 2], seed=3, activation=act)
        assert estimate(net, "seqlip").value <= estimate(net, "autolip").value * (1 + 1e-8)


def test_greedy_seqlip_runs_on_a_cnn():
    net = random_cnn((1, 8, 8), (3, 4), seed=1)
    b = estimate(net, "seqlip-greedy", top_k=16)
    assert b.kind == "estimate" and not b.certified
    assert 0 < b.value <= estimate(net, "autolip").value * 1.5


def test_time_limit_falls_back_to_an_upper_bound():
    net = random_mlp([3, 20, 20, 2], seed=0)
    fast = estimate(net, "seqlip", time_limit=1e-9)
    full = estimate(net, "seqlip")
    assert fast.status == "timeout" and fast.certified
    assert fast.value >= full.value * (1 - SEQLIP_RTOL)


def test_svd_defects_are_measured_and_a_poor_factorisation_inflates_the_bound():
    from lipopt_suite.core.seqlip import _factors, _svd_certified_value

    net = random_mlp([3, 6, 4, 2], seed=5)
    weights, _, _ = net.mlp()
    svds = _factors(weights)
    factors = [1.0, 1.0]
    tight, d = _svd_certified_value(weights, svds, factors, [1.0, 1.0])
    assert 0 < d["relative_inflation"] < 1e-10
    # perturb one factorisation by 1e-3: the residual must show up in the bound
    U, S, Vh = svds[1]
    loose, d2 = _svd_certified_value(weights, [svds[0], (U, S * (1 + 1e-3), Vh), svds[2]],
                                     factors, [1.0, 1.0])
    assert loose > tight * (1 + 1e-4) and max(d2["residuals"]) > 1e-4
