"""Exact Lipschitz constants of small piecewise-linear MLPs by enumerating linear regions.

A ReLU (or leaky-ReLU) MLP is affine on each full-dimensional region cut out by its
activation pattern, and its Lipschitz constant (global, or over a box) is the largest
||J||_{p->p} over the regions that meet the set (DESIGN.md section 1). The regions are
enumerated depth-first, neuron by neuron: each neuron's pre-activation is affine on the
current region, and each side of its hyperplane is kept when it is full-dimensional. A
side is known to be full-dimensional when a known interior point lies strictly on it;
otherwise a Chebyshev-ball LP (solved with HiGHS) decides and, if so, supplies one.

This is the ground truth for the project's soundness tests. The number of regions grows
like sum_{k<=n} C(N, k) for N hidden units and input dimension n, so large inputs or
widths are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bound import Bound, Domain
from ..errors import UnsupportedError
from ..network import Network
from ..registry import method

MAX_INPUT_DIM = 6
MAX_HIDDEN_UNITS = 64
MAX_REGIONS = 200_000
# A side of a hyperplane counts as full-dimensional when it holds a ball of radius above
# FULL_DIM_RADIUS * (1 + scale of the box); thinner slivers are treated as boundaries.
FULL_DIM_RADIUS = 1e-9
# Witness points must clear a hyperplane by this much (relative) to count as interior.
STRICT_MARGIN = 1e-10
INITIAL_SAMPLES = 2048


@dataclass(frozen=True)
class Region:
    """One full-dimensional linear region: its activation slopes, Jacobian, interior point."""

    slopes: tuple[np.ndarray, ...]
    jacobian: np.ndarray
    point: np.ndarray


@dataclass(frozen=True)
class RegionSet:
    regions: list[Region]
    complete: bool
    lps: int
    seconds: float


class _LP:
    """Largest ball (radius <= cap) inside {x : G x <= h} by one HiGHS LP."""

    def __init__(self) -> None:
        import highspy

        self._hs = highspy
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.count = 0

    def chebyshev(self, G: np.ndarray, h: np.ndarray, cap: float) -> tuple[float, np.ndarray]:
        hs = self._hs
        rows, n = G.shape
        norms = np.linalg.norm(G, axis=1)
        A = np.hstack([G, norms[:, None]])
        lp = hs.HighsLp()
        lp.num_col_ = n + 1
        lp.num_row_ = rows
        cost = np.zeros(n + 1)
        cost[-1] = -1.0
        lp.col_cost_ = cost
        lp.col_lower_ = np.full(n + 1, -hs.kHighsInf)
        upper = np.full(n + 1, hs.kHighsInf)
        upper[-1] = cap
        lp.col_upper_ = upper
        lp.row_lower_ = np.full(rows, -hs.kHighsInf)
        lp.row_upper_ = np.asarray(h, dtype=np.float64)
        lp.a_matrix_.format_ = hs.MatrixFormat.kRowwise
        lp.a_matrix_.start_ = np.arange(0, rows * (n + 1) + 1, n + 1, dtype=np.int32)
        lp.a_matrix_.index_ = np.tile(np.arange(n + 1, dtype=np.int32), rows)
        lp.a_matrix_.value_ = A.ravel()
        self.highs.clearModel()
        self.highs.passModel(lp)
        self.highs.run()
        self.count += 1
        if self.highs.getModelStatus() != hs.HighsModelStatus.kOptimal:
            return -np.inf, np.zeros(n)
        x = np.asarray(self.highs.getSolution().col_value)
        return float(x[-1]), x[:n]


def _check_net(net: Network) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    weights, biases, acts = net.mlp()
    if not net.is_piecewise_linear:
        raise UnsupportedError("regions needs a ReLU or leaky-ReLU MLP (piecewise linear)")
    n = weights[0].shape[1]
    hidden = sum(W.shape[0] for W in weights[:-1])
    if n > MAX_INPUT_DIM or hidden > MAX_HIDDEN_UNITS:
        raise UnsupportedError(
            f"regions: input dimension {n} and {hidden} hidden units may give up to "
            f"sum_(k<={n}) C({hidden}, k) linear regions; enumeration is limited to input "
            f"dimension <= {MAX_INPUT_DIM} and <= {MAX_HIDDEN_UNITS} hidden units (use mip for "
            "p = inf/1, or upper and lower bounds)")
    negative = [a.slopes[0] if a.name == "leaky_relu" else 0.0 for a in acts]
    return weights, biases, negative


def enumerate_regions(net: Network, *, lower: np.ndarray | None = None,
                      upper: np.ndarray | None = None, max_regions: int = MAX_REGIONS,
                      time_limit: float | None = None, seed: int = 0) -> RegionSet:
    """Every full-dimensional linear region of a piecewise-linear MLP (meeting the box
    [lower, upper] if given). `complete` is False if a limit stopped the enumeration."""
    weights, biases, negative = _check_net(net)
    start = time.perf_counter()
    n = weights[0].shape[1]
    lp = _LP()
    rng = np.random.default_rng(seed)
    if lower is not None:
        lo, hi = np.asarray(lower, np.float64).ravel(), np.asarray(upper, np.float64).ravel()
        G0 = np.vstack([np.eye(n), -np.eye(n)])
        h0 = np.concatenate([hi, -lo])
        X = lo + (hi - lo) * rng.random((INITIAL_SAMPLES, n))
        X = np.vstack([X, (lo + hi)[None] / 2])
        scale = float(np.max(np.abs(np.concatenate([lo, hi]))))
        cap = float(np.max(hi - lo))
    else:
        G0, h0 = np.zeros((0, n)), np.zeros(0)
        radius = 1.0 + max(float(np.max(np.abs(b))) for b in biases)
        X = np.vstack([rng.standard_normal((INITIAL_SAMPLES // 2, n)) * radius,
                       rng.standard_normal((INITIAL_SAMPLES // 2, n)) * radius * 10,
                       np.zeros((1, n))])
        scale, cap = radius, 1.0
    eps = FULL_DIM_RADIUS * (1.0 + scale)
    regions: list[Region] = []
    complete = True
    # stack entries: (layer, neuron, G, h, P, q, slopes so far, slopes this layer, witnesses)
    stack: list[tuple] = [(0, 0, G0, h0, np.eye(n), np.zeros(n), (), [], X)]
    while stack:
        if len(regions) >= max_regions or (
                time_limit is not None and time.perf_counter() - start > time_limit):
            complete = False
            break
        layer, i, G, h, P, q, done, cur, W_pts = stack.pop()
        if layer == len(weights) - 1:
            regions.append(Region(done, weights[-1] @ P, W_pts[0]))
            continue
        ZA, Zc = weights[layer] @ P, weights[layer] @ q + biases[layer]
        if i == ZA.shape[0]:
            slope = np.array(cur)
            stack.append((layer + 1, 0, G, h, slope[:, None] * ZA, slope * Zc,
                          done + (slope,), [], W_pts))
            continue
        a, c = ZA[i], Zc[i]
        a_norm = float(np.linalg.norm(a))
        if a_norm <= 1e-14 * (1.0 + float(np.abs(ZA).max())):
            # constant on the region: one side only (both sides agree when c == 0)
            stack.append((layer, i + 1, G, h, P, q, done, cur + [1.0 if c > 0 else
                                                                  negative[layer]], W_pts))
            continue
        vals = W_pts @ a + c
        margin = STRICT_MARGIN * (a_norm * (1.0 + np.abs(W_pts).max(axis=1)) + abs(c))
        for slope, sign in ((negative[layer], -1.0), (1.0, 1.0)):
            # this side: sign * (a^T x + c) >= 0, i.e. -sign a^T x <= sign c
            side = W_pts[sign * vals > margin]
            G2 = np.vstack([G, -sign * a[None]])
            h2 = np.append(h, sign * c)
            if side.shape[0] == 0:
                t, x = lp.chebyshev(G2, h2, cap)
                if not t > eps:
                    continue
                side = x[None]
            stack.append((layer, i + 1, G2, h2, P, q, done, cur + [slope], side))
    return RegionSet(regions, complete, lp.count, time.perf_counter() - start)


def region_norms(regions: list[Region], norm: str) -> np.ndarray:
    order = {"2": 2, "inf": np.inf, "1": 1}[norm]
    return np.array([np.linalg.norm(r.jacobian, ord=order) if r.jacobian.size else 0.0
                     for r in regions])


@method("regions", kind="exact", norms=("2", "inf", "1"), mlp_only=True,
        domain_kinds=("box",), activations=("relu", "leaky_relu"),
        summary="exact: max ||J|| over every full-dimensional linear region (tiny nets)")
def regions(net: Network, *, norm: str = "2", domain: Domain | None = None,
            max_regions: int = MAX_REGIONS, time_limit: float | None = None,
            **options: Any) -> Bound:
    """Exact constant of a small ReLU/leaky-ReLU MLP, globally or over a box.

    Reference: the linear-region view of piecewise-linear networks (e.g. Avant & Morgansen,
    Lemma 1: the constant of a continuous piecewise-linear map is the largest norm of its
    pieces' matrices); regions found by LP feasibility with HiGHS.
    Guarantee: exact (up to float64 rounding) when the enumeration completes; stopped by a
    limit it returns kind "lower" (every region found is real) with status "timeout".
    """
    lo = hi = None
    if domain is not None:
        lo, hi = domain.lower.ravel(), domain.upper.ravel()
    rs = enumerate_regions(net, lower=lo, upper=hi, max_regions=max_regions,
                           time_limit=time_limit)
    norms = region_norms(rs.regions, norm)
    k = int(np.argmax(norms)) if len(norms) else -1
    value = float(norms[k]) if k >= 0 else 0.0
    details = {"regions": len(rs.regions), "lps": rs.lps,
               "witness": {"x": rs.regions[k].point} if k >= 0 else None}
    if rs.complete:
        return Bound("regions", "exact", value, norm, certified=True, domain=domain,
                     details=details)
    return Bound("regions", "lower", value, norm, certified=True, status="timeout",
                 domain=domain, details=details)
