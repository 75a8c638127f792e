"""Exact and greedy maxima of ||A diag(s) B||_2 over box vertices, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lipopt_suite.core.patterns import greedy_pattern_norm, max_pattern_norm

SLOPES = [(0.0, 1.0), (0.1, 1.0), (0.0, 0.25), (-0.5, 1.0)]


def brute_force(A, B, alpha, beta):
    return max(np.linalg.norm(A @ np.diag(s) @ B, 2)
               for s in itertools.product([alpha, beta], repeat=A.shape[1]))


@pytest.mark.parametrize("seed", range(12))
def test_exact_max_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, r, q = rng.integers(1, 11), rng.integers(1, 6), rng.integers(1, 6)
    A, B = rng.standard_normal((r, n)), rng.standard_normal((n, q))
    alpha, beta = SLOPES[seed % len(SLOPES)]
    exact = brute_force(A, B, alpha, beta)
    res = max_pattern_norm(A, B, alpha, beta)
    assert res.complete
    assert res.lower <= exact * (1 + 1e-12) and res.upper >= exact
    assert res.upper <= exact * (1 + 1e-9)
    greedy, s = greedy_pattern_norm(A, B, alpha, beta)
    assert greedy <= exact * (1 + 1e-12)
    assert set(np.unique(s)) <= {alpha, beta}


def test_time_limit_keeps_an_upper_bound():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((6, 16)), rng.standard_normal((16, 6))
    res = max_pattern_norm(A, B, time_limit=0.0)
    assert not res.complete
    assert res.upper >= np.linalg.norm(A, 2) * np.linalg.norm(B, 2) * (1 - 1e-12)
    assert res.lower <= max_pattern_norm(A, B).upper
