"""Geometry of the branch-and-bound of `bab` (solvers/bab.py): affine pre-activations of a
fixed pattern prefix, the Chebyshev-ball test of a node's polyhedron (HiGHS), and exact
secant witnesses.

* A node's polyhedron is its chart box intersected with the half-spaces of its split
  neurons, each affine in the chart coordinates because every earlier layer is fixed (split
  or stable) when a neuron is split. `Chebyshev.ball` finds the largest ball inside it with
  one small HiGHS LP (an l2 ball domain is added as tangent cuts until the ball lies inside).
* `exact_secant` evaluates the network in rational arithmetic (fractions.Fraction: every
  float64 is a dyadic rational), so ||f(x) - f(y)|| / ||x - y|| is computed without rounding
  and only the last conversion to float is rounded, downwards. A pair inside one linear
  region along its top direction then gives a lower bound equal to the region's slope to
  about 1e-16 relative, which a float64 secant with its error bound cannot do on thin
  regions.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from ..quiet import native_silence
from .bab_bounds import Chart, Net

# Tangent cuts of an l2-ball domain added at most per Chebyshev test.
BALL_CUTS = 30


def affine_layer(net: Net, chart: Chart, slopes: list[np.ndarray], k: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(P, q) with z_k = P xi + q on the chart, given the slope vectors of layers < k."""
    P, q = chart.A0, chart.c0
    for j in range(k):
        W, b = net.weights[j + 1], net.biases[j + 1]
        P = W @ (slopes[j][:, None] * P) + np.outer(b, chart.ts)
        q = W @ (slopes[j] * q) + b * chart.t0
    return P, q


class Chebyshev:
    """Largest inscribed balls of {xi in box : G xi <= h} (and an l2 ball, if given), one
    reusable HiGHS instance."""

    def __init__(self, dim: int, ball: tuple[np.ndarray, float] | None = None) -> None:
        import highspy

        with native_silence():
            self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        self.hs = highspy
        self.dim = dim
        self.ball = ball
        self.count = 0

    def ball_in(self, G: np.ndarray, h: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                cap: float) -> tuple[float, np.ndarray, float]:
        """(radius, centre, relaxed radius): a ball of `radius` (<= cap) about `centre` lies
        inside the polyhedron (and the domain ball); no ball larger than `relaxed radius`
        does. Radii are -inf when the LP finds no point."""
        if len(G):
            scale = np.maximum(np.linalg.norm(G, axis=1), 1e-300)
            G, h = G / scale[:, None], h / scale
        if self.ball is None:
            r, x = self._solve(G, h, lo, hi, cap)
            return r, x, r
        c, R = self.ball
        for _ in range(BALL_CUTS):
            r, x = self._solve(G, h, lo, hi, cap)
            if not math.isfinite(r):
                return r, x, r
            dist = float(np.linalg.norm(x - c))
            if dist + r <= R:
                return r, x, r
            # the tangent half-space at the point of the ball domain nearest to x
            u = (x - c) / max(dist, 1e-300)
            G, h = np.vstack([G.reshape(-1, self.dim), u]), np.append(h, u @ c + R)
        return min(r, R - dist), x, r

    def _solve(self, G: np.ndarray, h: np.ndarray, lo: np.ndarray, hi: np.ndarray,
               cap: float) -> tuple[float, np.ndarray]:
        hs = self.hs
        d = self.dim
        inf = hs.kHighsInf
        # rows: G xi + rho <= h (unit rows), xi - rho >= lo, xi + rho <= hi
        eye = np.eye(d)
        A = np.vstack([np.hstack([G, np.ones((len(G), 1))]),
                       np.hstack([eye, -np.ones((d, 1))]),
                       np.hstack([eye, np.ones((d, 1))])])
        row_lo = np.concatenate([np.full(len(G), -inf), lo, np.full(d, -inf)])
        row_hi = np.concatenate([h, np.full(d, inf), hi])
        lp = hs.HighsLp()
        lp.num_col_, lp.num_row_ = d + 1, A.shape[0]
        cost = np.zeros(d + 1)
        cost[-1] = -1.0
        lp.col_cost_ = cost
        lp.col_lower_ = np.append(np.full(d, -inf), -inf)
        lp.col_upper_ = np.append(np.full(d, inf), cap)
        lp.row_lower_, lp.row_upper_ = row_lo, row_hi
        lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
        nz = np.nonzero(A)
        lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum(np.bincount(nz[0],
                                                                         minlength=A.shape[0]))
                                              ]).astype(np.int32)
        lp.a_matrix_.index_ = nz[1].astype(np.int32)
        lp.a_matrix_.value_ = A[nz].astype(np.float64)
        self.h.clearModel()  # the caller keeps native output silenced (quiet.native_silence)
        self.h.passModel(lp)
        self.h.run()
        self.count += 1
        if self.h.getModelStatus() != hs.HighsModelStatus.kOptimal:
            return -math.inf, np.zeros(d)
        sol = np.asarray(self.h.getSolution().col_value)
        return float(sol[-1]), sol[:d]


# ------------------------------------------------------------------------ exact secants
def _fractions(a: np.ndarray) -> np.ndarray:
    return np.vectorize(Fraction, otypes=[object])(np.asarray(a, np.float64))


class ExactNet:
    """The network in rational arithmetic (exact for float64 weights and inputs)."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.W = [_fractions(W) for W in net.weights]
        self.b = [_fractions(b) for b in net.biases]
        self.a = [Fraction(a) for a in net.slopes]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        v = _fractions(x)
        for k in range(len(self.W)):
            z = self.W[k].dot(v) + self.b[k]
            if k == len(self.W) - 1:
                return z
            a = self.a[k]
            v = np.array([zi if zi > 0 else a * zi for zi in z], dtype=object)
        return v


def _round_down(q: Fraction) -> float:
    f = float(q)
    while Fraction(f) > q:
        f = math.nextafter(f, -math.inf)
    return f


def exact_secant(exact: ExactNet, x: np.ndarray, y: np.ndarray, norm: str) -> float:
    """||f(x) - f(y)||_p / ||x - y||_p rounded down (0 if x == y)."""
    dx = _fractions(x) - _fractions(y)
    df = exact(x) - exact(y)
    if norm == "inf":
        num, den = max(abs(v) for v in df), max(abs(v) for v in dx)
    elif norm == "1":
        num, den = sum(abs(v) for v in df), sum(abs(v) for v in dx)
    else:
        num, den = sum(v * v for v in df), sum(v * v for v in dx)
    if den == 0:
        return 0.0
    q = num / den
    if norm != "2":
        return max(_round_down(q), 0.0)
    r = math.sqrt(float(q))
    while r > 0 and Fraction(r) ** 2 > q:
        r = math.nextafter(r, 0.0)
    return r
