"""Exact Lipschitz constants of small piecewise-linear MLPs by enumerating linear regions.

A ReLU (or leaky-ReLU) MLP is affine on each full-dimensional region cut out by its
activation pattern, and its Lipschitz constant (global, or over a box) is the largest
||J||_{p->p} over the regions that meet the set (DESIGN.md section 1). The regions are
enumerated depth-first, neuron by neuron: each neuron's pre-activation is affine on the
current region, and each side of its hyperplane is kept when it is full-dimensional. A
side is known to be full-dimensional when a known interior point lies strictly on it;
otherwise a Chebyshev-ball LP (solved with HiGHS) decides and, if so, supplies one.

A GroupSort layer (contiguous groups sorted ascending; MaxMin for pairs) is piecewise
linear too: it is run as a sorting network of comparators (odd-even transposition within
each group; one comparator per pair for MaxMin), each comparator's hyperplane v_i - v_j = 0
splitting the region, its two sides mapping the pair by the identity or by the swap. So a
MaxMin layer of n units brings n/2 hyperplanes, and the enumeration counts comparators
where an elementwise layer counts neurons.

This is the ground truth for the project's soundness tests. The number of regions grows
like sum_{k<=n} C(N, k) for N hidden units (or comparators) and input dimension n, so
large inputs or widths are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..bound import Bound, Domain
from ..errors import UnsupportedError
from ..network import GroupSort, Network
from ..quiet import native_silence
from ..registry import method

MAX_INPUT_DIM = 6
MAX_HIDDEN_UNITS = 64
MAX_REGIONS = 200_000
# A side of a hyperplane counts as full-dimensional when it holds a ball of radius above
# FULL_DIM_RADIUS * (1 + scale of the box). A side whose largest ball is below that but above
# SLIVER_RADIUS * (1 + scale) (rounding noise of a lower-dimensional set) is a sliver: it may
# be a genuine region too thin to resolve, so a search that skips one no longer claims an
# exact value.
FULL_DIM_RADIUS = 1e-9
SLIVER_RADIUS = 1e-14
# Witness points must clear a hyperplane by this much (relative) to count as interior.
STRICT_MARGIN = 1e-10
INITIAL_SAMPLES = 2048


@dataclass(frozen=True)
class Region:
    """One full-dimensional linear region: its activation slopes (for a GroupSort layer one
    0/1 per comparator, 1 where the pair was swapped), Jacobian, interior point."""

    slopes: tuple[np.ndarray, ...]
    jacobian: np.ndarray
    point: np.ndarray


@dataclass(frozen=True)
class RegionSet:
    regions: list[Region]
    complete: bool
    lps: int
    seconds: float
    slivers: int = 0  # sides skipped as too thin to resolve, though not provably empty


class _LP:
    """The current region's constraints G x <= h as one HiGHS model, grown and shrunk with
    the depth-first search; `chebyshev` finds the largest inscribed ball (radius <= cap).
    Re-solving after adding a row warm-starts from the previous basis."""

    def __init__(self, n: int, cap: float) -> None:
        import highspy

        self.n = n
        with native_silence():  # highspy >= 1.16 prints a banner on construction
            self.highs = highspy.Highs()
            self.highs.setOptionValue("output_flag", False)
        inf = highspy.kHighsInf
        self.inf = inf
        self.optimal = highspy.HighsModelStatus.kOptimal
        self.highs.addVars(n + 1, np.full(n + 1, -inf), np.append(np.full(n, inf), cap))
        self.highs.changeColCost(n, -1.0)
        self.index = np.arange(n + 1, dtype=np.int32)
        self.count = 0
        self.rows: list[np.ndarray] = []  # (g, h) of each constraint, as pushed

    def push(self, g: np.ndarray, h: float) -> None:
        """Add the constraint g^T x <= h (as g^T x + ||g|| t <= h)."""
        self.highs.addRow(-self.inf, float(h), self.n + 1, self.index,
                          np.append(g, np.linalg.norm(g)))
        self.rows.append(np.append(g, float(h)))

    def pop(self) -> None:
        rows = self.highs.getNumRow()
        self.highs.deleteRows(1, np.array([rows - 1], dtype=np.int32))
        self.rows.pop()

    def side_of(self, a: np.ndarray, c: float) -> int:
        """-1 when a constraint of the region is exactly a^T x + c <= 0 (the region lies on
        that side), +1 when one is exactly a^T x + c >= 0, else 0. Exact float equality: a
        hyperplane met again (as the gadgets of an unrolled max pooling do) splits nothing."""
        if not self.rows:
            return 0
        R = np.asarray(self.rows)
        key = np.append(a, -c)
        if np.any(np.all(R == key, axis=1)):
            return -1
        if np.any(np.all(R == -key, axis=1)):
            return 1
        return 0

    def chebyshev(self) -> tuple[float, np.ndarray]:
        self.highs.run()
        self.count += 1
        if self.highs.getModelStatus() != self.optimal:
            return -np.inf, np.zeros(self.n)
        x = np.asarray(self.highs.getSolution().col_value)
        return float(x[-1]), x[:self.n]


class _Stop(Exception):
    """A limit (regions or time) was reached."""


@dataclass(frozen=True)
class _Hidden:
    """How the enumeration splits one hidden layer: neurons with their negative slope
    (elementwise) or the comparators of a sort."""

    negative: float = 0.0
    comparators: tuple[tuple[int, int], ...] | None = None

    def pieces(self, width: int) -> int:
        return width if self.comparators is None else len(self.comparators)


def _check_net(net: Network, max_input_dim: int = MAX_INPUT_DIM,
               max_hidden_units: int = MAX_HIDDEN_UNITS
               ) -> tuple[list[np.ndarray], list[np.ndarray], list[_Hidden]]:
    weights, biases, acts = net.mlp(groupsort=True)
    if not net.is_piecewise_linear:
        raise UnsupportedError("regions needs a ReLU, leaky-ReLU or GroupSort MLP (piecewise "
                               "linear)")
    hidden: list[_Hidden] = []
    for W, a in zip(weights, acts):
        if isinstance(a, GroupSort):
            rounds = a.comparator_rounds(W.shape[0])
            hidden.append(_Hidden(comparators=tuple(c for r in rounds for c in r)))
        else:
            hidden.append(_Hidden(negative=a.slopes[0] if a.name == "leaky_relu" else 0.0))
    n = weights[0].shape[1]
    units = sum(h.pieces(W.shape[0]) for h, W in zip(hidden, weights))
    what = "hidden units" if not net.has_groupsort else "hidden units or comparators"
    if n > max_input_dim or units > max_hidden_units:
        raise UnsupportedError(
            f"regions: input dimension {n} and {units} {what} may give up to "
            f"sum_(k<={n}) C({units}, k) linear regions; enumeration is limited to input "
            f"dimension <= {max_input_dim} and <= {max_hidden_units} {what} (raise "
            "max_input_dim / max_hidden_units with a time limit, use mip for p = inf/1, or "
            "upper and lower bounds)")
    return weights, biases, hidden


def _implied(rel: frozenset, a: int, b: int) -> bool:
    """Whether a <= b follows from the pairs (x, y), x <= y, of `rel` by transitivity."""
    frontier, seen = [a], {a}
    while frontier:
        x = frontier.pop()
        for lo, hi in rel:
            if lo == x and hi not in seen:
                if hi == b:
                    return True
                seen.add(hi)
                frontier.append(hi)
    return False


def enumerate_regions(net: Network, *, lower: np.ndarray | None = None,
                      upper: np.ndarray | None = None, max_regions: int = MAX_REGIONS,
                      time_limit: float | None = None, seed: int = 0,
                      max_input_dim: int = MAX_INPUT_DIM,
                      max_hidden_units: int = MAX_HIDDEN_UNITS) -> RegionSet:
    """Every full-dimensional linear region of a piecewise-linear MLP (meeting the box
    [lower, upper] if given). `complete` is False if a limit stopped the enumeration."""
    weights, biases, hidden = _check_net(net, max_input_dim, max_hidden_units)
    start = time.perf_counter()
    n = weights[0].shape[1]
    rng = np.random.default_rng(seed)
    if lower is not None:
        lo, hi = np.asarray(lower, np.float64).ravel(), np.asarray(upper, np.float64).ravel()
        X = lo + (hi - lo) * rng.random((INITIAL_SAMPLES, n))
        X = np.vstack([X, (lo + hi)[None] / 2])
        scale = float(np.max(np.abs(np.concatenate([lo, hi]))))
        lp = _LP(n, float(np.max(hi - lo)))
        for k in range(n):
            e = np.zeros(n)
            e[k] = 1.0
            lp.push(e, hi[k])
            lp.push(-e, -lo[k])
    else:
        radius = 1.0 + max(float(np.max(np.abs(b))) for b in biases)
        X = np.vstack([rng.standard_normal((INITIAL_SAMPLES // 2, n)) * radius,
                       rng.standard_normal((INITIAL_SAMPLES // 2, n)) * radius * 10,
                       np.zeros((1, n))])
        scale = radius
        lp = _LP(n, 1.0)
    eps = FULL_DIM_RADIUS * (1.0 + scale)
    floor = SLIVER_RADIUS * (1.0 + scale)
    regions: list[Region] = []
    slivers = [0]
    last = len(weights) - 1

    def sides(a: np.ndarray, c: float, scale_a: float, pts: np.ndarray, choices: tuple,
              go) -> None:
        """Explore both sides of a^T x + c = 0 that are full-dimensional: choices[0] on the
        side a^T x + c <= 0, choices[1] on the other, `go(choice, points)` for each."""
        a_norm = float(np.linalg.norm(a))
        if a_norm <= 1e-14 * (1.0 + scale_a):
            # constant on the region: one side only (both sides agree when c == 0)
            go(choices[1] if c > 0 else choices[0], pts)
            return
        known = lp.side_of(a, c)
        if known:
            # the region lies on one closed side already: the other is lower-dimensional
            go(choices[0] if known < 0 else choices[1], pts)
            return
        vals = pts @ a + c
        margin = STRICT_MARGIN * (a_norm * (1.0 + np.abs(pts).max(axis=1)) + abs(c))
        for choice, sign in ((choices[0], -1.0), (choices[1], 1.0)):
            # this side: sign * (a^T x + c) >= 0, i.e. -sign a^T x <= sign c
            side = pts[sign * vals > margin]
            lp.push(-sign * a, sign * c)
            try:
                if side.shape[0] == 0:
                    t, x = lp.chebyshev()
                    if not t > eps:
                        slivers[0] += t > floor
                        continue
                    side = x[None]
                go(choice, side)
            finally:
                lp.pop()

    def next_layer(layer: int, P2: np.ndarray, q2: np.ndarray, done: tuple,
                   pts: np.ndarray) -> None:
        nxt = layer + 1
        explore(nxt, 0, weights[nxt] @ P2, weights[nxt] @ q2 + biases[nxt], done, [], pts)

    def explore(layer: int, i: int, ZA: np.ndarray, Zc: np.ndarray, done: tuple, cur: list,
                pts: np.ndarray, perm: tuple[int, ...] | None = None,
                rel: frozenset = frozenset()) -> None:
        """The pre-activation (or, in a sort, the partly sorted values) of `layer` is
        ZA x + Zc on the current region; `cur` holds its choices so far (slopes, or swaps).
        In a sort, `perm` gives the pre-activation at each position and `rel` the pairs
        (a, b) with pre-activation a <= b on the region, from the comparisons so far."""
        if len(regions) >= max_regions or (
                time_limit is not None and time.perf_counter() - start > time_limit):
            raise _Stop
        if layer == last:
            regions.append(Region(done, ZA, pts[0]))
            return
        h = hidden[layer]
        if h.comparators is None:
            if i == ZA.shape[0]:
                slope = np.array(cur)
                next_layer(layer, slope[:, None] * ZA, slope * Zc, done + (slope,), pts)
                return
            sides(ZA[i], float(Zc[i]), float(np.abs(ZA).max()), pts, (h.negative, 1.0),
                  lambda s, p: explore(layer, i + 1, ZA, Zc, done, cur + [s], p))
            return
        if i == len(h.comparators):
            next_layer(layer, ZA, Zc, done + (np.array(cur, dtype=np.float64),), pts)
            return
        j, k = h.comparators[i]
        perm = perm if perm is not None else tuple(range(ZA.shape[0]))
        p, q = perm[j], perm[k]  # the pre-activations now at positions j and k

        def go(swap: float, pts2: np.ndarray) -> None:
            lo, hi = (q, p) if swap else (p, q)
            known = rel | {(lo, hi)}
            if not swap:
                explore(layer, i + 1, ZA, Zc, done, cur + [0.0], pts2, perm, known)
                return
            order = np.arange(ZA.shape[0])
            order[[j, k]] = order[[k, j]]
            explore(layer, i + 1, ZA[order], Zc[order], done, cur + [1.0], pts2,
                    tuple(perm[o] for o in order), known)

        # an order implied by the comparisons made so far (transitively) splits nothing:
        # its other side is lower-dimensional (the same or a combined hyperplane)
        if _implied(rel, p, q):
            go(0.0, pts)
        elif _implied(rel, q, p):
            go(1.0, pts)
        else:
            # v_j - v_k <= 0 keeps the pair, > 0 swaps it (the smaller value goes to j)
            sides(ZA[j] - ZA[k], float(Zc[j] - Zc[k]), float(np.abs(ZA).max()), pts,
                  (0.0, 1.0), go)

    complete = True
    try:
        explore(0, 0, weights[0], biases[0], (), [], X)
    except _Stop:
        complete = False
    return RegionSet(regions, complete, lp.count, time.perf_counter() - start, slivers[0])


def region_norms(regions: list[Region], norm: str) -> np.ndarray:
    order = {"2": 2, "inf": np.inf, "1": 1}[norm]
    return np.array([np.linalg.norm(r.jacobian, ord=order) if r.jacobian.size else 0.0
                     for r in regions])


@method("regions", kind="exact", cost="exhaustive", norms=("2", "inf", "1"), mlp_only=True,
        domain_kinds=("box",), activations=("relu", "leaky_relu"), groupsort=True,
        summary="exact: max ||J|| over every full-dimensional linear region (tiny nets)")
def regions(net: Network, *, norm: str = "2", domain: Domain | None = None,
            max_regions: int = MAX_REGIONS, time_limit: float | None = None,
            max_input_dim: int = MAX_INPUT_DIM, max_hidden_units: int = MAX_HIDDEN_UNITS) -> Bound:
    """Exact constant of a small ReLU/leaky-ReLU/GroupSort MLP, globally or over a box.

    Reference: the linear-region view of piecewise-linear networks (e.g. Avant & Morgansen,
    Lemma 1: the constant of a continuous piecewise-linear map is the largest norm of its
    pieces' matrices); regions found by LP feasibility with HiGHS.
    Guarantee: exact (up to float64 rounding) when the enumeration completes; stopped by a
    limit it returns kind "lower" (every region found is real) with status "timeout", and
    with status "inaccurate" when a region too thin to resolve (relative width < 1e-9) may
    hold a larger slope.
    """
    lo = hi = None
    if domain is not None:
        lo, hi = domain.lower.ravel(), domain.upper.ravel()
    key = ("regions", None if lo is None else (tuple(lo), tuple(hi)))
    # a complete enumeration serves every norm; an incomplete one is not kept
    rs = net.memo(__name__, key, lambda: enumerate_regions(
        net, lower=lo, upper=hi, max_regions=max_regions, time_limit=time_limit,
        max_input_dim=max_input_dim, max_hidden_units=max_hidden_units),
        keep=lambda r: r.complete)
    norms = region_norms(rs.regions, norm)
    k = int(np.argmax(norms)) if len(norms) else -1
    value = float(norms[k]) if k >= 0 else 0.0
    details = {"regions": len(rs.regions), "lps": rs.lps,
               "witness": {"x": rs.regions[k].point} if k >= 0 else None}
    if rs.complete and rs.slivers:
        details["slivers"] = rs.slivers
        details["message"] = (
            f"{rs.slivers} region(s) thinner than {FULL_DIM_RADIUS:g} x (1 + scale) could not "
            "be resolved and may hold a larger slope: the value is a lower bound")
        return Bound("regions", "lower", value, norm, certified=True, status="inaccurate",
                     domain=domain, details=details)
    if rs.complete:
        return Bound("regions", "exact", value, norm, certified=True, domain=domain,
                     details=details)
    return Bound("regions", "lower", value, norm, certified=True, status="timeout",
                 domain=domain, details=details)
