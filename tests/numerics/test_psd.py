"""Cholesky proofs of Gram-matrix eigenvalue bounds."""

from __future__ import annotations

import math

import numpy as np
import torch

from lipopt_suite.numerics.psd import Gram, certify_gram, certify_positive_definite

# Two computations of the same certified bound (dense vs banded factorisation) differ only
# by their certificate slacks (<= 1e-6 relative).
PATH_TOL = 1e-5


def test_gram_certificate_is_an_upper_bound() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    for n, density in ((40, 0.3), (400, 0.02)):
        M = sp.random(n + 7, n, density=density, random_state=rng, format="csr")
        G = sp.tril(M.T @ M).tocoo()
        exact = math.sqrt(np.linalg.eigvalsh((M.T @ M).toarray())[-1])
        for dense_max in (0, 10_000):
            gram = Gram(G.row.astype(np.int64), G.col.astype(np.int64), G.data, n,
                           n + 9, "inputs", torch.device("cpu"))
            value, how = certify_gram(gram, dense_max=dense_max, budget=1e12)
            assert exact <= value <= exact * (1 + PATH_TOL), how
        assert certify_gram(gram, dense_max=0, budget=1.0)[0] is None


def test_certify_positive_definite():
    assert certify_positive_definite(np.eye(4))
    assert not certify_positive_definite(np.diag([1.0, -1e-12]))
    # positive, but below what float64 rounding lets one prove
    assert not certify_positive_definite(np.diag([1.0, 1e-18]))
    # the allowance for errors in X itself is honoured
    assert certify_positive_definite(np.diag([1.0, 1e-3]), error=1e-4)
    assert not certify_positive_definite(np.diag([1.0, 1e-3]), error=1e-2)
