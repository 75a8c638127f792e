"""Proofs of positive definiteness by floating-point Cholesky factorisations.

A Cholesky factorisation of A - c I that succeeds in floating point proves A positive
definite when the shift c covers the factorisation's backward error (Rump, BIT 2006:
c >= gamma_{n+1} / (1 - gamma_{n+1}) tr(A) suffices); the certificates here add the
rounding of forming A itself. `certify_positive_definite` proves a dense symmetric matrix
(and every matrix within a given distance of it) positive definite; `certify_gram` proves
an upper bound on lambda_max of a sparse Gram matrix (dense or banded factorisation,
whichever is cheaper); `spectral.certify_spectral_upper` does the same for a dense W^T W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .blas import single_threaded
from .rounding import UNIT_ROUNDOFF, gamma, up

U = UNIT_ROUNDOFF
# Relative slack of successive certificate attempts above the Lanczos estimate.
CERT_SLACKS = (1e-8, 1e-6, 1e-4, 1e-2, 1.0)
# Elementwise rounding-error bounds are computed in floating point themselves; inflating them
# by 1% covers that second-order rounding many times over.
ERR_SAFETY = 1.01


@dataclass(frozen=True)
class Gram:
    """The lower triangle of a Gram matrix of R A D (on the free inputs or on the rows with
    r > 0, whichever factors faster), indexed in (row, column, channel) order, with the length
    of the dot products that formed its entries."""

    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    n: int
    inner: int
    side: str
    device: torch.device


def _lambda_estimate(gram: Gram) -> float:
    """Largest eigenvalue of the assembled Gram matrix (Lanczos; a dense solve when small)."""
    import scipy.sparse as sp

    n = gram.n
    off = gram.rows != gram.cols
    r = np.concatenate([gram.rows, gram.cols[off]])
    c = np.concatenate([gram.cols, gram.rows[off]])
    v = np.concatenate([gram.vals, gram.vals[off]])
    G = sp.csr_matrix((v, (r, c)), shape=(n, n))
    if n <= 300:
        return float(np.linalg.eigvalsh(G.toarray())[-1])
    from scipy.sparse.linalg import eigsh

    v0 = np.random.default_rng(0).random(n) + 0.5
    try:
        return float(eigsh(G, k=1, which="LA", tol=1e-9, v0=v0, maxiter=20 * n)[0][0])
    except Exception:  # noqa: BLE001 - ARPACK non-convergence: a cruder start value
        return float(np.abs(G).sum(1).max())


def certify_gram(gram: Gram, *, dense_max: int, budget: float
                  ) -> tuple[float | None, str]:
    """A proven upper bound on ||R A D|| = sqrt(lambda_max(G_exact)), or (None, why) when the
    factorisation would exceed the flop budget.

    G's computed entries differ from the exact ones by at most gamma_inner (|M|^T |M|)_ij,
    a perturbation of spectral norm <= gamma_inner tr(G). lambda_max(G) <= t2 is proven by a
    floating-point Cholesky factorisation of (t2 - c) I - G with the shift c of Rump (BIT
    2006) covering the factorisation's rounding, plus the diagonal's own rounding.
    """
    n = gram.n
    if n == 0 or not np.any(gram.vals):
        return 0.0, "zero"
    diag = np.zeros(n)
    on = gram.rows == gram.cols
    diag[gram.rows[on]] = gram.vals[on]
    trace = float(np.sum(np.abs(diag))) * (1 + (n + 4) * U)
    bw = int(np.max(gram.rows - gram.cols))
    dense_cost, band_cost = n ** 3 / 3.0, n * (bw + 1) ** 2
    use_dense = n <= dense_max and dense_cost <= max(band_cost, 1e8)
    if min(dense_cost if n <= dense_max else math.inf, band_cost) > budget:
        return None, "budget"
    lam = max(_lambda_estimate(gram), 0.0)
    floor = max(lam, float(diag.max()), 1e-300)
    err_g = 2.0 * gamma(gram.inner) * trace * ERR_SAFETY

    def shift(t2: float) -> float:
        trace_a = max(n * t2 - float(diag.sum()), 0.0)
        return (err_g + 2.0 * (n + 1) * U * trace_a * ERR_SAFETY
                + 4.0 * U * (t2 + float(diag.max())) + 1e-300)

    factor = _dense_factor if use_dense else _banded_factor
    for slack in CERT_SLACKS:
        t2 = lam * (1 + slack) + err_g
        for _ in range(2):  # t2 = lam (1 + slack) + shift(t2), a contraction
            t2 = lam * (1 + slack) + shift(t2)
        if factor(gram, t2 - shift(t2), bw):
            return up(up(math.sqrt(t2)) * (1 + 2 * U)), (
                f"gram-{'dense' if use_dense else 'banded'}({gram.side}, n={n}, bw={bw})")
    # Gershgorin: lambda_max(G) <= max_i sum_j |G_ij|, plus the entries' error
    absrow = np.zeros(n)
    np.add.at(absrow, gram.rows, np.abs(gram.vals))
    np.add.at(absrow, gram.cols[~on], np.abs(gram.vals[~on]))
    t2 = float(absrow.max()) * (1 + (n + 4) * U) + err_g
    return up(up(math.sqrt(max(t2, floor))) * (1 + 2 * U)), f"gram-gershgorin(n={n})"


def _dense_factor(gram: Gram, d: float, bw: int) -> bool:
    """Does the floating-point Cholesky factorisation of d I - G succeed?"""
    dev = gram.device
    A = torch.zeros((gram.n, gram.n), dtype=torch.float64, device=dev)
    rows = torch.as_tensor(gram.rows, device=dev)
    cols = torch.as_tensor(gram.cols, device=dev)
    vals = torch.as_tensor(gram.vals, device=dev)
    A[rows, cols] = -vals
    A[cols, rows] = -vals
    A.diagonal().add_(d)
    _, info = torch.linalg.cholesky_ex(A)
    return int(info) == 0


def _banded_factor(gram: Gram, d: float, bw: int) -> bool:
    """Banded Cholesky (LAPACK dpbtrf) of d I - G, G given by its lower triangle."""
    from scipy.linalg import LinAlgError, cholesky_banded

    ab = np.zeros((bw + 1, gram.n))
    ab[gram.rows - gram.cols, gram.cols] = -gram.vals
    ab[0] += d
    try:
        # OpenBLAS's threaded banded Cholesky is up to 50x slower than one thread on a busy
        # machine (measured: n = 4096, bandwidth 559: 7.8 s with 2 threads, 0.1 s with 1)
        with single_threaded():
            cholesky_banded(ab, lower=True, overwrite_ab=True, check_finite=False)
    except LinAlgError:
        return False
    return True


def certify_positive_definite(X: np.ndarray, error: float = 0.0) -> bool:
    """True only if every symmetric Y with ||Y - X||_2 <= error is positive definite.

    Floating-point Cholesky of X - s I with s covering `error`, the diagonal shift's own
    rounding and the factorisation's backward error (Rump, BIT 2006: success of Cholesky
    on A - c I with c >= gamma_{n+1} / (1 - gamma_{n+1}) tr(A) proves A positive definite;
    the constants here are doubled for safety).
    """
    from scipy.linalg import lapack

    n = X.shape[0]
    if n == 0:
        return True
    d = np.diag(X)
    if not np.all(np.isfinite(X)) or np.any(d <= 0):
        return False
    g = gamma(n + 1)
    trace = float(d.sum()) * 1.01
    chol = g / (1 - g) * trace + 4 * n * (2 * (n + 1) + float(d.max())) * 5e-324
    shift = 2.0 * (chol + error + 2 * UNIT_ROUNDOFF * float(d.max())) + 1e-300
    Y = X - shift * np.eye(n)
    _, info = lapack.dpotrf(Y, lower=1, clean=0, overwrite_a=1)
    return int(info) == 0
