"""Exact l2 constant of one-hidden-layer ReLU nets over activation patterns; LIP-CST instances.

f(x) = M2 relu(M1 x + b1) + b2 has Jacobian M2 diag(s) M1 on the linear region of the
activation pattern s in {0,1}^l, so L(f) = max over the patterns whose region is
full-dimensional of ||M2 diag(s) M1||_2 (Scaman & Virmaux, NeurIPS 2018, Section 3). When M1
has full row rank every pattern is reachable and this is the maximum of a convex function over
the hypercube, which is NP-hard in general: the reduction from Max-Cut (`solvers.lipcst`,
`lipopt lipcst`) shows it on concrete graphs.

The search is a depth-first branch-and-bound over partial patterns. A node fixes the first d
neurons (in decreasing order of ||M2[:, j]|| ||M1[j]||); with t = s - 1/2 on the free ones,
||M_fixed + A_R diag(s_R) B_R|| <= ||M_fixed + A_R B_R / 2|| + ||A_R diag(t) B_R|| and the last
term is at most min(||A_R|| ||B_R||, sum_j ||a_j|| ||b_j||) / 2, a valid bound per node.
* Every pattern reachable: the last K neurons of each surviving node are enumerated at once
  (2^K completions, vectorised, with a Gram-matrix screen before any eigenvalue).
* M1 rank-deficient: a child is kept only if its region is full-dimensional, decided by a
  known interior point or a Chebyshev-ball LP (HiGHS); the first rank(M1) neurons in the order
  are linearly independent rows, so their patterns are all reachable without an LP.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError, UnsupportedError
from ..network import Network
from ..numerics.polytope import chebyshev_ball
from ..registry import method
from .regions import (  # one criterion of full dimension
    FULL_DIM_RADIUS,
    SLIVER_RADIUS,
    STRICT_MARGIN,
)

# Without a time limit, requests whose pattern count exceeds these are refused. Measured on 2
# shared cores: ~1.5e7 patterns/s when M2 or M1 is a vector (2^28 in ~17 s), ~1.5e6/s for
# matrix products (l = 26, 4 outputs: 1.7e7 patterns in ~11 s), and ~1 ms per region when
# regions need LPs; the limits keep an untimed call to a few minutes at most.
MAX_UNTIMED_PATTERNS = 2**31
MAX_UNTIMED_MATRIX_PATTERNS = 2**28
MAX_UNTIMED_REGIONS = 200_000
# Completions enumerated at once below a node: 2^LEAF_BITS patterns, and at most
# LEAF_ELEMENTS matrix entries in one batch.
LEAF_BITS = 14
LEAF_ELEMENTS = 2**22
# Pruning and the proven bounds carry this relative slack for float64 rounding (spectral
# norms and Gram eigenvalues are backward stable, error ~ 1e-15 relative at these sizes).
BOUND_MARGIN = 1e-9
SAMPLES = 2048
# A neuron whose weight row or output column is this small (relative) is treated as constant.
ZERO_ROW = 1e-14


@dataclass(frozen=True)
class PatternSearch:
    """lower <= max over reachable patterns of ||M2 diag(s) M1||_2 <= upper."""

    upper: float
    lower: float
    pattern: np.ndarray  # activation pattern (all l neurons) at `point`, attaining `lower`
    point: np.ndarray  # an input in the interior of that pattern's region
    complete: bool  # False when the time limit stopped the search, or slivers > 0
    reachable: str  # "all" (full row rank) or "regions" (LP-checked)
    nodes: int
    patterns: int  # complete patterns whose norm was evaluated
    lps: int
    slivers: int = 0  # regions too thin to resolve whose bound exceeds the incumbent


# ------------------------------------------------------------------------ helpers
def two_layer(net: Network) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M1, b1, M2) of a one-hidden-layer ReLU MLP; refuses anything else."""
    weights, biases, acts = net.mlp()
    if len(acts) != 1 or acts[0].name != "relu":
        hidden = len(acts)
        raise UnsupportedError(
            f"hypercube needs a one-hidden-layer ReLU MLP (f = M2 relu(M1 x + b1) + b2); this "
            f"network has {hidden} hidden layer{'s' if hidden != 1 else ''}"
            + ("" if not acts else f" with {', '.join(sorted({a.name for a in acts}))}")
            + " (use regions, mip or the upper bounds)")
    return np.asarray(weights[0]), np.asarray(biases[0]), np.asarray(weights[1])


def _order(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, int]:
    """Neurons by decreasing ||a_j|| ||b_j||, a maximal linearly independent set of rows of B
    first; returns (order, rank)."""
    weight = np.linalg.norm(A, axis=0) * np.linalg.norm(B, axis=1)
    by_weight = list(np.argsort(-weight, kind="stable"))
    tol = max(B.shape) * np.finfo(np.float64).eps * max(float(np.abs(B).max()), 1e-300)
    basis = np.zeros((0, B.shape[1]))
    independent, rest = [], []
    for j in by_weight:
        v = B[j] - basis.T @ (basis @ B[j]) if basis.size else B[j].copy()
        v = v - basis.T @ (basis @ v) if basis.size else v  # re-orthogonalise once
        nv = float(np.linalg.norm(v))
        if nv > tol * 1e3 and len(independent) < B.shape[1]:
            independent.append(j)
            basis = np.vstack([basis, v / nv])
        else:
            rest.append(j)
    return np.array(independent + rest, dtype=int), len(independent)


class _NodeBound:
    """Upper bounds on max over completions s_R of ||M + A_R diag(s_R) B_R||_2 at depth d
    (R = neurons d, d+1, ..., in search order), for a node whose fixed part is M:
    * centred: ||M + A_R B_R / 2|| + min(||A_R|| ||B_R||, sum_j ||a_j|| ||b_j||) / 2;
    * quadratic: ||.||_2 <= ||.||_F, and ||M + sum_j s_j a_j b_j^T||_F^2 = ||M||_F^2
      + sum_j s_j (2 g_j + Q_jj) + sum_{j != k} s_j s_k Q_jk with Q = (A^T A) o (B B^T) and
      g_j = a_j^T M b_j; each term is bounded by its positive part (exact when m = 1 or
      n = 1 up to the pair interactions)."""

    def __init__(self, A: np.ndarray, B: np.ndarray) -> None:
        l = A.shape[1]
        self.H, self.R = [], np.zeros(l + 1)
        col = np.linalg.norm(A, axis=0) * np.linalg.norm(B, axis=1)
        for d in range(l + 1):
            Ad, Bd = A[:, d:], B[d:]
            self.H.append(Ad @ Bd / 2)
            if d < l:
                self.R[d] = min(np.linalg.norm(Ad, 2) * np.linalg.norm(Bd, 2),
                                col[d:].sum()) / 2
        self.Q = (A.T @ A) * (B @ B.T)
        pos = np.triu(np.clip(self.Q, 0, None), 1)
        # P[d] = sum over j != k >= d of max(Q_jk, 0)
        self.P = np.zeros(l + 1)
        for d in range(l - 1, -1, -1):
            self.P[d] = self.P[d + 1] + 2 * pos[d, d + 1:].sum()
        self.diag = np.diag(self.Q).copy()

    def __call__(self, d: int, M: np.ndarray, g: np.ndarray) -> float:
        centred = _norm2(M + self.H[d]) + self.R[d]
        quad = float(np.sum(M * M)) + float(np.clip(2 * g[d:] + self.diag[d:], 0, None).sum())
        return min(centred, math.sqrt(max(quad + self.P[d], 0.0)))


def bit_patterns(k: int) -> np.ndarray:
    """Every 0/1 vector of length k, one per row (2^k, k), bit j of row i = bit j of i."""
    idx = np.arange(2**k)
    return ((idx[:, None] >> np.arange(k)) & 1).astype(np.float64)


def _block_max(V: np.ndarray, best: float) -> tuple[float, int]:
    """Largest ||V[p]||_2 over a batch if it can beat `best`: (value, index) or (-1, -1)."""
    from ..core.patterns import screened_max_norm

    val, idx, _ = screened_max_norm(V, best * (1 - BOUND_MARGIN) if best > 0 else best)
    return (val, idx) if idx >= 0 and val > best else (-1.0, -1)


def _norm2(M: np.ndarray) -> float:
    return float(np.linalg.norm(M, 2)) if M.size else 0.0


# ------------------------------------------------------------------------ the search
def _search_all(A: np.ndarray, B: np.ndarray, deadline: float | None
                ) -> tuple[float, np.ndarray, bool, float, int, int]:
    """Every pattern reachable. Returns (best, pattern, complete, open bound, nodes, leaves)
    with A, B already in search order."""
    from ..core.patterns import greedy_pattern_norm

    m, l = A.shape
    n = B.shape[1]
    k = min(l, LEAF_BITS, max(1, int(math.log2(max(LEAF_ELEMENTS // max(m * n, 1), 2)))))
    top = l - k
    bound = _NodeBound(A, B)
    T = np.einsum("pk,ik,kj->pij", bit_patterns(k), A[:, top:], B[top:])
    best, s = greedy_pattern_norm(A, B)
    best_s = np.asarray(s, dtype=np.float64)
    g0 = np.zeros(l)
    stack = [(bound(0, np.zeros((m, n)), g0), 0, np.zeros((m, n)), g0, np.zeros(0))]
    nodes = leaves = 0
    while stack:
        if deadline is not None and time.perf_counter() > deadline:
            open_bound = max(ub for ub, *_ in stack)
            return best, best_s, False, open_bound, nodes, leaves
        ub, d, M, g, prefix = stack.pop()
        if ub * (1 + BOUND_MARGIN) < best:
            continue
        nodes += 1
        if d == top:
            leaves += T.shape[0]
            val, idx = _block_max(M[None] + T, best)
            if idx >= 0:
                best = val
                best_s = np.concatenate([prefix, bit_patterns(k)[idx]])
            continue
        outer = np.outer(A[:, d], B[d])
        children = []
        for bit in (0.0, 1.0):
            Mc, gc = (M + outer, g + bound.Q[d]) if bit else (M, g)
            children.append((bound(d + 1, Mc, gc), d + 1, Mc, gc, np.append(prefix, bit)))
        children.sort(key=lambda c: c[0])  # the more promising child is explored first
        stack.extend(c for c in children if c[0] * (1 + BOUND_MARGIN) >= best)
    return best, best_s, True, best, nodes, leaves


def _search_regions(A: np.ndarray, B: np.ndarray, c: np.ndarray, rank: int,
                    deadline: float | None, seed: int = 0
                    ) -> tuple[float, np.ndarray, np.ndarray, bool, float, int, int, int, int]:
    """Patterns restricted to full-dimensional regions (A, B, c in search order). Returns
    (best, pattern, point, complete, open bound, nodes, leaves, lps, slivers); slivers > 0
    (with complete False) when sides too thin to resolve could beat the incumbent."""
    m, l = A.shape
    n = B.shape[1]
    bound = _NodeBound(A, B)
    rng = np.random.default_rng(seed)
    radius = 1.0 + float(np.abs(c).max(initial=0.0))
    X = np.vstack([rng.standard_normal((SAMPLES // 2, n)) * radius,
                   rng.standard_normal((SAMPLES // 2, n)) * radius * 10, np.zeros((1, n))])
    eps = FULL_DIM_RADIUS * (1.0 + radius)
    floor = SLIVER_RADIUS * (1.0 + radius)
    sliver_bounds: list[float] = []  # node bounds of sides too thin to resolve
    # incumbent: the patterns met by the sample points (each one is a real region)
    Z = X @ B.T + c
    margin = STRICT_MARGIN * (np.linalg.norm(B, axis=1) * (1 + np.abs(X).max(axis=1))[:, None]
                              + np.abs(c))
    clear = np.all(np.abs(Z) > margin, axis=1)
    best, best_s, best_x = -1.0, np.zeros(l), np.zeros(n)
    if clear.any():
        S, first = np.unique((Z[clear] > 0).astype(np.float64), axis=0, return_index=True)
        V = np.einsum("ik,pk,kj->pij", A, S, B)
        vals = np.linalg.norm(V, ord=2, axis=(1, 2))
        j = int(np.argmax(vals))
        best, best_s, best_x = float(vals[j]), S[j], X[clear][first[j]]
    row_norm = np.linalg.norm(B, axis=1)
    nodes = leaves = lps = 0
    # entries: (bound, depth, M, g, prefix, G, h, interior points)
    g0 = np.zeros(l)
    stack = [(bound(0, np.zeros((m, n)), g0), 0, np.zeros((m, n)), g0, np.zeros(0),
              np.zeros((0, n)), np.zeros(0), X)]
    while stack:
        if deadline is not None and time.perf_counter() > deadline:
            open_bound = max(e[0] for e in stack)
            return best, best_s, best_x, False, open_bound, nodes, leaves, lps, 0
        ub, d, M, g, prefix, G, h, pts = stack.pop()
        if ub * (1 + BOUND_MARGIN) < best:
            continue
        nodes += 1
        if d == l:
            leaves += 1
            val = _norm2(M)
            if val > best:
                best, best_s, best_x = val, prefix, pts[0]
            continue
        outer = np.outer(A[:, d], B[d])
        vals = pts @ B[d] + c[d]
        tol = STRICT_MARGIN * (row_norm[d] * (1 + np.abs(pts).max(axis=1)) + abs(c[d]))
        children = []
        for bit, sign in ((0.0, -1.0), (1.0, 1.0)):
            Mc, gc = (M + outer, g + bound.Q[d]) if bit else (M, g)
            ub_child = bound(d + 1, Mc, gc)
            if ub_child * (1 + BOUND_MARGIN) < best:
                continue
            # this side: sign * (B[d] x + c[d]) > 0, i.e. -sign B[d] x <= sign c[d]
            G2, h2 = np.vstack([G, -sign * B[d][None]]), np.append(h, sign * c[d])
            side = pts[sign * vals > tol]
            if side.shape[0] == 0:
                if d < rank:
                    # rows 0..d are independent: hit the targets +-1 exactly
                    target = np.where(np.append(prefix, bit) > 0, 1.0, -1.0) - c[:d + 1]
                    x = np.linalg.lstsq(B[:d + 1], target, rcond=None)[0]
                else:
                    lps += 1
                    t, x = chebyshev_ball(G2, h2, 1.0)
                    if not t > eps:
                        if t > floor:
                            sliver_bounds.append(ub_child)
                        continue
                side = x[None]
            children.append((ub_child, d + 1, Mc, gc, np.append(prefix, bit), G2, h2, side))
        children.sort(key=lambda e: e[0])
        stack.extend(children)
    # a skipped sliver matters only if its bound beats the final incumbent
    open_slivers = [ub for ub in sliver_bounds if ub * (1 + BOUND_MARGIN) >= best]
    if open_slivers:
        return (best, best_s, best_x, False, max(open_slivers), nodes, leaves, lps,
                len(open_slivers))
    return best, best_s, best_x, True, best, nodes, leaves, lps, 0


def region_count_bound(l: int, rank: int) -> int:
    """Most regions l affine hyperplanes can cut from a space of dimension `rank`."""
    return sum(math.comb(l, k) for k in range(min(rank, l) + 1))


def max_reachable_pattern_norm(M1: np.ndarray, b1: np.ndarray, M2: np.ndarray, *,
                               time_limit: float | None = None,
                               max_patterns: int | None = None,
                               max_regions: int | None = None) -> PatternSearch:
    """max over full-dimensional activation regions of ||M2 diag(s) M1||_2 by branch-and-bound.

    Without a time limit, a search over more than `max_patterns` patterns (every pattern
    reachable) or `max_regions` possible regions is refused with UnsupportedError.
    """
    start = time.perf_counter()
    M1, b1, M2 = (np.asarray(a, dtype=np.float64) for a in (M1, b1, M2))
    l, n = M1.shape
    scale = ZERO_ROW * (1.0 + max(float(np.abs(M1).max(initial=0)),
                                  float(np.abs(M2).max(initial=0))))
    # neurons with a zero weight row are constant and those with a zero output column never
    # reach the output: neither changes any Jacobian, so their regions merge
    active = np.nonzero((np.linalg.norm(M1, axis=1) > scale)
                        & (np.linalg.norm(M2, axis=0) > scale))[0]
    A, B, c = M2[:, active], M1[active], b1[active]
    order, rank = _order(A, B) if active.size else (np.zeros(0, int), 0)
    A, B, c = A[:, order], B[order], c[order]
    la = active.size
    every = rank == la
    if max_patterns is None:
        vector = min(M2.shape[0], n) == 1
        max_patterns = MAX_UNTIMED_PATTERNS if vector else MAX_UNTIMED_MATRIX_PATTERNS
    max_regions = MAX_UNTIMED_REGIONS if max_regions is None else max_regions
    if time_limit is None:
        if every and 2.0**la > max_patterns:
            raise UnsupportedError(
                f"hypercube: {la} active hidden neurons with M1 of full row rank give 2^{la} "
                f"reachable activation patterns, more than the {max_patterns:.3g} searched "
                "without a time limit; pass time_limit=S (--time-limit) for a proven upper "
                "bound, or use seqlip/lipsdp-neuron for upper bounds")
        count = region_count_bound(la, rank)
        if not every and count > max_regions:
            raise UnsupportedError(
                f"hypercube: {la} active hidden neurons in a {rank}-dimensional row space may "
                f"cut up to {count:.3g} linear regions, more than the {max_regions:.3g} searched "
                "without a time limit; pass time_limit=S (--time-limit) for a proven upper "
                "bound, or use seqlip/lipsdp-neuron for upper bounds")
    deadline = None if time_limit is None else start + float(time_limit)
    lps = slivers = 0
    if la == 0:
        best, s, x, complete, open_bound, nodes, leaves = 0.0, np.zeros(0), np.zeros(n), \
            True, 0.0, 0, 1
    elif every:
        best, s, complete, open_bound, nodes, leaves = _search_all(A, B, deadline)
        x = np.linalg.lstsq(B, np.where(s > 0, 1.0, -1.0) - c, rcond=None)[0]
    else:
        best, s, x, complete, open_bound, nodes, leaves, lps, slivers = _search_regions(
            A, B, c, rank, deadline)
    # the pattern at the witness point, over all l neurons, and its norm computed directly
    pattern = (M1 @ x + b1 > 0).astype(np.float64)
    pattern[active[order]] = s
    lower = _norm2((M2 * pattern) @ M1) if l else 0.0
    upper = max(open_bound, best, lower) * (1 + BOUND_MARGIN)
    return PatternSearch(upper, lower, pattern, x, complete, "all" if every else "regions",
                         nodes, leaves, lps, slivers)


# ------------------------------------------------------------------------ the method
@method("hypercube", kind="exact", cost="exhaustive", norms=("2",), relu_only=True, mlp_only=True,
        domain="never",
        summary="exact l2 for one-hidden-layer ReLU nets: branch-and-bound over {0,1}^l")
def hypercube(net: Network, *, norm: str = "2", domain: Domain | None = None,
              time_limit: float | None = None, max_patterns: int | None = None,
              max_regions: int = MAX_UNTIMED_REGIONS) -> Bound:
    """Exact global l2 constant of f = M2 relu(M1 x + b1) + b2 over its activation patterns.

    Reference: Scaman & Virmaux, "Lipschitz regularity of deep neural networks: analysis and
    efficient estimation", NeurIPS 2018 (Section 3: L(f) = max_s ||M2 diag(s) M1||_2 and
    LIP-CST is NP-hard). Idea: branch-and-bound over partial patterns with the bound
    ||M_fixed + A_R B_R / 2|| + ||A_R|| ||B_R|| / 2; when M1 lacks full row rank only
    patterns with a full-dimensional region are searched (interior points, LPs).
    Without a time limit, more than `max_patterns` reachable patterns (default 2^31 for a
    scalar output or input, 2^28 otherwise) or `max_regions` possible regions is refused; a
    linear network (no hidden layer) gives ||W||_2.
    Guarantee: exact (float64, with the maximising pattern and an interior point of its
    region as witness); stopped by `time_limit` it returns kind "upper" with the proven
    bound max(incumbent, bounds of the unexplored nodes), status "timeout".
    """
    weights, _, acts = net.mlp()
    if not acts:
        value = _norm2(weights[0])
        return Bound("hypercube", "exact", value, norm, certified=True,
                     details={"hidden": 0, "note": "linear network: ||W||_2"})
    M1, b1, M2 = two_layer(net)
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise InputError(f"hypercube: time_limit must be positive, got {time_limit}")
    res = max_reachable_pattern_norm(M1, b1, M2, time_limit=time_limit,
                                     max_patterns=max_patterns, max_regions=max_regions)
    details = {"reachable": res.reachable, "nodes": res.nodes, "patterns": res.patterns,
               "lps": res.lps, "hidden": M1.shape[0],
               "witness": {"x": res.point, "pattern": res.pattern.astype(int)}}
    if res.complete:
        return Bound("hypercube", "exact", res.lower, norm, certified=True, details=details)
    details["incumbent"] = res.lower
    if res.slivers:
        details["message"] = (
            f"a region too thin to resolve (relative width < {FULL_DIM_RADIUS:g}) may hold a "
            "larger slope: the value is the proven upper bound, the incumbent a lower bound")
        return Bound("hypercube", "upper", res.upper, norm, certified=True,
                     status="inaccurate", details=details)
    return Bound("hypercube", "upper", res.upper, norm, certified=True, status="timeout",
                 details=details)


# ------------------------------------------------------------------------ LIP-CST


