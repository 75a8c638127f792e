"""Boxes and polytopes: interval and LP bounds on pre-activations, largest inner balls.

* `interval_bounds` propagates a box through the affine layers and ReLUs of an MLP by
  interval arithmetic; `lp_bounds` tightens each hidden layer's bounds by linear programs
  over the triangle relaxation of the layers before it (HiGHS, warm-started).
* `chebyshev_ball` is the largest ball inside {x : G x <= h} (one LP); `region_ball` the
  largest ball inside a box and the linear region of an activation pattern, the test of
  full dimension that the exact methods share.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..quiet import native_silence

# LP-tightened pre-activation bounds are widened by this much (relative) so that LP solver
# tolerances never make a neuron look stable when it is not.
LP_BOUND_SLACK = 1e-7

Intervals = list[tuple[np.ndarray, np.ndarray]]


def interval_bounds(weights: list[np.ndarray], biases: list[np.ndarray], lo: np.ndarray,
                    hi: np.ndarray, *, start: int = 0, prior: Intervals | None = None
                    ) -> Intervals:
    """[l_k, u_k] of the hidden pre-activations k >= `start` when the input of layer `start`
    ranges over the box [lo, hi] (interval arithmetic through W, b and ReLU). With `prior`
    (bounds of every hidden layer known before), each layer's result is intersected with
    them before it is propagated further."""
    out = []
    a_lo, a_hi = lo, hi
    for k in range(start, len(weights) - 1):
        W, b = weights[k], biases[k]
        Wp, Wn = np.clip(W, 0, None), np.clip(W, None, 0)
        z_lo, z_hi = Wp @ a_lo + Wn @ a_hi + b, Wp @ a_hi + Wn @ a_lo + b
        if prior is not None:
            z_lo, z_hi = np.maximum(prior[k][0], z_lo), np.minimum(prior[k][1], z_hi)
        out.append((z_lo, z_hi))
        a_lo, a_hi = np.maximum(z_lo, 0), np.maximum(z_hi, 0)
    return out


def _triangle_lp(weights: list[np.ndarray], biases: list[np.ndarray], pre: Intervals,
                 k: int, lo: np.ndarray, hi: np.ndarray) -> tuple[Any, np.ndarray]:
    """The LP over the input box and the ReLU triangle relaxation of the hidden layers
    before layer k (variables: the input, then each layer's post-activation), as a
    highspy HighsLp with zero cost, and the column offsets of each block."""
    import highspy
    from scipy import sparse

    inf = highspy.kHighsInf
    sizes = [lo.size] + [W.shape[0] for W in weights[:k]]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    col_lo, col_hi = [lo], [hi]
    rows_mats, r_lo, r_hi = [], [], []

    def block(t: int, rows: np.ndarray, Wpart: np.ndarray) -> None:
        eye = sparse.identity(Wpart.shape[0], format="csr")
        left = sparse.csr_matrix((int(rows.sum()), offs[t]))
        right = sparse.csr_matrix((int(rows.sum()), offs[-1] - offs[t + 2]))
        rows_mats.append(sparse.hstack([left, sparse.csr_matrix(Wpart[rows]), eye[rows],
                                        right]))

    for t in range(k):
        zl, zh = pre[t]
        W, b = weights[t], biases[t]
        on, unst = zl >= 0, (zl < 0) & (zh > 0)
        col_lo.append(np.where(on, zl, 0.0))
        col_hi.append(np.where(on | unst, zh, 0.0))
        if on.any():  # a = z
            block(t, on, -W)
            r_lo.append(b[on])
            r_hi.append(b[on])
        if unst.any():  # a >= z, and a <= u (z - l) / (u - l)
            block(t, unst, -W)
            r_lo.append(b[unst])
            r_hi.append(np.full(int(unst.sum()), inf))
            slope = np.where(unst, zh / np.where(unst, zh - zl, 1.0), 0.0)
            block(t, unst, -slope[:, None] * W)
            r_lo.append(np.full(int(unst.sum()), -inf))
            r_hi.append((slope * (b - zl))[unst])
    A = sparse.vstack(rows_mats).tocsc() if rows_mats else sparse.csc_matrix((0, offs[-1]))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = int(offs[-1]), int(A.shape[0])
    lp.col_cost_ = np.zeros(lp.num_col_)
    lp.col_lower_, lp.col_upper_ = np.concatenate(col_lo), np.concatenate(col_hi)
    lp.row_lower_ = np.concatenate(r_lo) if r_lo else np.zeros(0)
    lp.row_upper_ = np.concatenate(r_hi) if r_hi else np.zeros(0)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(np.float64)
    return lp, offs


def lp_bounds(weights: list[np.ndarray], biases: list[np.ndarray], lo: np.ndarray,
              hi: np.ndarray, deadline: float | None = None) -> Intervals:
    """Pre-activation bounds tightened by linear programming: each neuron of layer k is
    minimised and maximised over the box and the triangle relaxation of layers < k (HiGHS,
    warm-started). Falls back to interval bounds where an LP fails or time runs out."""
    import highspy

    pre = interval_bounds(weights, biases, lo, hi)
    for k in range(1, len(weights) - 1):
        if deadline is not None and time.perf_counter() > deadline:
            break
        lp, offs = _triangle_lp(weights, biases, pre, k, lo, hi)
        with native_silence():
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
            h.passModel(lp)
            W, b = weights[k], biases[k]
            last = np.arange(offs[k], offs[k + 1], dtype=np.int32)
            zl, zh = pre[k][0].copy(), pre[k][1].copy()
            for j in range(W.shape[0]):
                if deadline is not None and time.perf_counter() > deadline:
                    break
                h.changeColsCost(last.size, last, W[j])
                for sense, lower in ((highspy.ObjSense.kMinimize, True),
                                     (highspy.ObjSense.kMaximize, False)):
                    h.changeObjectiveSense(sense)
                    h.run()
                    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                        continue
                    val = h.getInfo().objective_function_value + b[j]
                    slack = LP_BOUND_SLACK * (1.0 + abs(val))
                    if lower:
                        zl[j] = max(zl[j], val - slack)
                    else:
                        zh[j] = min(zh[j], val + slack)
        pre[k] = (zl, zh)
        # later layers' interval bounds from the tightened ones
        pre[k + 1:] = interval_bounds(weights, biases, np.maximum(zl, 0), np.maximum(zh, 0),
                                      start=k + 1, prior=pre)
    return pre


def chebyshev_ball(G: np.ndarray, h: np.ndarray, cap: float) -> tuple[float, np.ndarray]:
    """Largest ball (radius <= cap) inside {x : G x <= h}: (radius, centre) by one HiGHS LP.
    The radius is <= 0 when the set has no interior (-inf if the LP fails)."""
    from scipy.optimize import linprog

    rows, n = G.shape
    if rows == 0:
        return cap, np.zeros(n)
    norms = np.linalg.norm(G, axis=1)
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    bounds = [(None, None)] * n + [(None, cap)]
    res = linprog(cost, A_ub=np.hstack([G, norms[:, None]]), b_ub=h, bounds=bounds,
                  method="highs")
    if res.status != 0:
        return -math.inf, np.zeros(n)
    return float(res.x[-1]), np.asarray(res.x[:n])


def region_ball(weights: list[np.ndarray], biases: list[np.ndarray],
                pattern: list[np.ndarray], lo: np.ndarray, hi: np.ndarray
                ) -> tuple[float, np.ndarray]:
    """Largest ball inside the box [lo, hi] and the linear region of the 0/1 activation
    `pattern` (one array per hidden layer): (radius, centre); radius <= 0 when they share
    no interior."""
    n = lo.size
    P, q = np.eye(n), np.zeros(n)
    G, h = [np.eye(n), -np.eye(n)], [hi, -lo]
    for W, b, s in zip(weights[:-1], biases[:-1], pattern):
        ZA, Zc = W @ P, W @ q + b
        sign = np.where(s > 0, 1.0, -1.0)
        G.append(-sign[:, None] * ZA)
        h.append(sign * Zc)
        P, q = s[:, None] * ZA, s * Zc
    G_all, h_all = np.vstack(G), np.concatenate(h)
    norms = np.linalg.norm(G_all, axis=1)
    flat = norms <= 1e-14 * (1 + np.abs(G_all).max())
    if np.any(h_all[flat] < 0):  # a constant pre-activation on the wrong side
        return -math.inf, np.zeros(n)
    return chebyshev_ball(G_all[~flat], h_all[~flat], float(np.max(hi - lo)))
