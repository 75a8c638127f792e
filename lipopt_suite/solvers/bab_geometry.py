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

from ..numerics.rounding import UNIT_ROUNDOFF
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
        inside the polyhedron (and the domain ball), measured at the LP's centre; no ball
        larger than `relaxed radius` does, by a dual certificate (LP duality with the float
        residual of the multipliers charged), so a side is dropped as empty only when that
        is proven, not when the solver's tolerances (~1e-7) hide a thin region."""
        if len(G):
            scale = np.maximum(np.linalg.norm(G, axis=1), 1e-300)
            G, h = G / scale[:, None], h / scale
        G = G.reshape(-1, self.dim)
        if self.ball is None:
            return self._solve(G, h, lo, hi, cap)
        c, R = self.ball
        for _ in range(BALL_CUTS):
            r, x, relaxed = self._solve(G, h, lo, hi, cap)
            if not math.isfinite(relaxed):
                return r, x, relaxed
            dist = float(np.linalg.norm(x - c))
            if dist + r <= R:
                return r, x, relaxed
            # the tangent half-space at the point of the ball domain nearest to x
            u = (x - c) / max(dist, 1e-300)
            G, h = np.vstack([G, u]), np.append(h, u @ c + R)
        return min(r, R - dist), x, relaxed

    def _solve(self, G: np.ndarray, h: np.ndarray, lo: np.ndarray, hi: np.ndarray,
               cap: float) -> tuple[float, np.ndarray, float]:
        hs = self.hs
        d = self.dim
        inf = hs.kHighsInf
        span = float(np.max(hi - lo))
        # max rho s.t. M [xi; rho] <= q: unit rows G xi + rho <= h, lo - xi + rho <= 0,
        # xi - hi + rho <= 0, rho <= cap; rho >= -span keeps the variables bounded
        eye = np.eye(d)
        M = np.vstack([np.hstack([G, np.ones((len(G), 1))]),
                       np.hstack([-eye, np.ones((d, 1))]),
                       np.hstack([eye, np.ones((d, 1))]),
                       np.append(np.zeros(d), 1.0)[None]])
        q = np.concatenate([h, -lo, hi, [cap]])
        lp = hs.HighsLp()
        lp.num_col_, lp.num_row_ = d + 1, M.shape[0]
        cost = np.zeros(d + 1)
        cost[-1] = -1.0
        lp.col_cost_ = cost
        lp.col_lower_ = np.append(lo - span, -span)
        lp.col_upper_ = np.append(hi + span, inf)
        lp.row_lower_, lp.row_upper_ = np.full(M.shape[0], -inf), q
        lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
        nz = np.nonzero(M)
        lp.a_matrix_.start_ = np.concatenate(
            [[0], np.cumsum(np.bincount(nz[0], minlength=M.shape[0]))]).astype(np.int32)
        lp.a_matrix_.index_ = nz[1].astype(np.int32)
        lp.a_matrix_.value_ = M[nz].astype(np.float64)
        self.h.clearModel()  # the caller keeps native output silenced (quiet.native_silence)
        self.h.passModel(lp)
        self.h.run()
        self.count += 1
        status = self.h.getModelStatus()
        if status == hs.HighsModelStatus.kInfeasible:
            return -math.inf, np.zeros(d), -math.inf
        sol = self.h.getSolution()
        x = np.asarray(sol.col_value)[:d]
        if status != hs.HighsModelStatus.kOptimal:
            return -math.inf, np.zeros(d), math.inf  # undecided: never called empty
        # the radius actually available at x
        slack = np.concatenate([h - G @ x, x - lo, hi - x])
        radius = min(float(slack.min()) if slack.size else cap, cap)
        e = np.zeros(d + 1)
        e[-1] = 1.0
        bound = np.append(np.maximum(np.abs(lo), np.abs(hi)) + span, max(span, cap))
        relaxed = self._certify(M, q, np.maximum(-np.asarray(sol.row_dual), 0.0), e, bound)
        if relaxed > 1e-12 * (1 + span):
            # the solver's multipliers are only accurate to its tolerances: refit them on
            # the rows active at its vertex (non-negative least squares), often exact
            from scipy.optimize import nnls

            z = np.asarray(sol.col_value)
            active = np.nonzero(q - M @ z <= 1e-6 * (1 + span))[0]
            if active.size:
                try:
                    lam_a, _ = nnls(M[active].T, e)
                except (RuntimeError, ValueError, np.linalg.LinAlgError):
                    # no refit (scipy's NNLS may stop at its iteration cap): the solver's
                    # own multipliers, certified above, stand
                    return radius, x, relaxed
                lam = np.zeros(M.shape[0])
                lam[active] = lam_a
                relaxed = min(relaxed, self._certify(M, q, lam, e, bound))
        return radius, x, relaxed

    @staticmethod
    def _certify(M: np.ndarray, q: np.ndarray, lam: np.ndarray, e: np.ndarray,
                 bound: np.ndarray) -> float:
        """Weak duality: for lam >= 0, rho <= lam.q + |e - M^T lam| . max|variables|, with
        the float64 rounding of the products added (Higham 3.5)."""
        resid = np.abs(e - M.T @ lam)
        value = float(lam @ q + resid @ bound)
        return value + 4 * (M.shape[0] + M.shape[1] + 2) * UNIT_ROUNDOFF * float(
            np.abs(lam) @ np.abs(q) + (np.abs(M.T) @ lam) @ bound + resid @ bound)


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
            a, ident = self.a[k], self.net.ident[k]
            v = np.array([zi if zi > 0 or ident[i] else a * zi for i, zi in enumerate(z)],
                         dtype=object)
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
