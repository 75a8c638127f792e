"""Exact l_inf and l_1 Lipschitz constants of ReLU MLPs by a mixed-integer program (lipMIP).

Over a box X the constant of a ReLU MLP is the largest ||J||_{p->p} over the linear regions
meeting X (DESIGN.md section 1). For p = inf, ||J||_{inf->inf} = max over v in [-1, 1]^n of
max_i (J v)_i (the set is symmetric, so the sign of the row sum comes for free); for p = 1,
||J||_{1->1} = max over v in the simplex of ||J v||_1. The program has, per ReLU:
* the forward pass z = W a + b, a = relu(z) with one binary delta and big-M constants from
  interval bounds [l, u] of z over the box (neurons stable on the box get no binary);
* the directional derivative through the same binaries: d = W e, e = delta * d, encoded
  exactly with interval bounds of d (which depend on the weights and the stable set only);
* the output norm with binaries: a one-hot choice of the output row (p = inf) or one sign
  per output (p = 1).
For a fixed pattern the program is linear in v, so v needs no binaries.

The solver's pattern is checked afterwards: an LP finds a ball inside box and region (the
witness x), and the norm of that region's Jacobian is recomputed in float64. A pattern that
is not realisable (a solver-tolerance artefact) is cut off and the program solved again.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError, UnsupportedError
from ..network import Network
from ..numerics.polytope import interval_bounds, lp_bounds, region_ball
from ..quiet import native_silence
from ..registry import method
from . import backends
from .regions import FULL_DIM_RADIUS, SLIVER_RADIUS  # one criterion of full dimension

# The agreement required between the recomputed value of the solver's pattern and its proven
# bound before the answer is called exact (the acceptance tests compare with region
# enumeration at 1e-6 relative); the solver's own gaps are backends.backends.MIP_REL_GAP/ABS_GAP.
EXACT_RTOL = 1e-6
# Solves after cutting off patterns whose region misses the box (tolerance artefacts).
MAX_RESOLVES = 5
# Seconds spent at most on LP-tightening the big-M constants when there is no time limit.
TIGHTEN_SECONDS = 30.0
# Random points of the box whose Jacobian norms cross-check a solver's "optimal" (at most
# SAMPLE_ELEMENTS Jacobian entries at once): a point beating the optimum exposes a wrong
# optimality claim.
SAMPLES = 1000
SAMPLE_ELEMENTS = 20_000_000
# Proven bounds (interval and solver bounds) are inflated by this much for float64 rounding.
BOUND_MARGIN = 1e-9
# Without a time limit, programs with more binaries or inputs than these are refused: their
# solve time is unpredictable (minutes to days); a time limit makes them anytime.
MAX_UNTIMED_BINARIES = 200
MAX_UNTIMED_INPUTS = 64
# Default global box: centred at 0 with half-width GLOBAL_MARGIN * (1 + r), r the largest
# |coordinate| of a vertex of the first layer's hyperplane arrangement (computed when it has at
# most MAX_VERTEX_SUBSETS candidate vertices), else GLOBAL_FALLBACK_RADIUS; times DEEP_GROWTH
# per hidden layer after the first (a heuristic: on seeded nets with 2-3 hidden layers the
# regions of deeper layers reached up to 30 times the first layer's vertex radius).
GLOBAL_MARGIN = 2.0
DEEP_GROWTH = 10.0
GLOBAL_FALLBACK_RADIUS = 100.0
MAX_VERTEX_SUBSETS = 200_000


# ------------------------------------------------------------------------ bounds




def chain(weights: list[np.ndarray], norm: str) -> tuple[list[np.ndarray], list[int]]:
    """The matrices whose gated product P has ||J||_{p->p} = ||P||_{1->1}, and the hidden layer
    gating each step: J itself for p = 1; for p = inf, J^T = W_0^T D_0 ... D_{K-2} W_{K-1}^T,
    the backward pass (as in lipMIP), which starts from a constant row instead of a free
    direction and so keeps its big-M constants small."""
    if norm == "1":
        return list(weights), list(range(len(weights) - 1))
    return [W.T for W in reversed(weights)], list(range(len(weights) - 2, -1, -1))


def derivative_bounds(mats: list[np.ndarray], gates: list[np.ndarray]
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval bounds of d_0 = C_0 u, d_k = C_k (g_{k-1} o d_{k-1}) for u in the simplex and
    every gate allowed by `gates` (per step: 1 always on, 0 always off, -1 either)."""
    d_lo, d_hi = mats[0].min(axis=1), mats[0].max(axis=1)
    out = [(d_lo, d_hi)]
    for C, st in zip(mats[1:], gates):
        e_lo = np.where(st == 1, d_lo, np.where(st == 0, 0.0, np.minimum(d_lo, 0)))
        e_hi = np.where(st == 1, d_hi, np.where(st == 0, 0.0, np.maximum(d_hi, 0)))
        Cp, Cn = np.clip(C, 0, None), np.clip(C, None, 0)
        d_lo, d_hi = Cp @ e_lo + Cn @ e_hi, Cp @ e_hi + Cn @ e_lo
        out.append((d_lo, d_hi))
    return out


def interval_norm_bound(y_lo: np.ndarray, y_hi: np.ndarray) -> float:
    """An upper bound on max_j ||P e_j||_1 from the interval of P u (valid for every pattern
    reachable in the box)."""
    return float(np.maximum(np.abs(y_lo), np.abs(y_hi)).sum()) * (1 + BOUND_MARGIN)


def arrangement_radius(W: np.ndarray, b: np.ndarray, max_subsets: int = MAX_VERTEX_SUBSETS
                       ) -> float | None:
    """Largest |coordinate| of a vertex of the arrangement {W_i x + b_i = 0} taken in the row
    space of W (every full-dimensional region's closure holds such a vertex); None when there
    are more than `max_subsets` candidate vertices."""
    rows = np.linalg.norm(W, axis=1) > 0
    W, b = W[rows], b[rows]
    if W.shape[0] == 0:
        return 0.0
    _, sv, Vt = np.linalg.svd(W, full_matrices=False)
    r = int(np.sum(sv > sv[0] * max(W.shape) * np.finfo(np.float64).eps))
    Q = Vt[:r].T  # orthonormal basis of the row space
    WQ = W @ Q
    if math.comb(W.shape[0], r) > max_subsets:
        return None
    best = 0.0
    subsets = np.array(list(itertools.combinations(range(W.shape[0]), r)), dtype=int)
    for chunk in np.array_split(subsets, max(1, len(subsets) // 20_000)):
        Ms = WQ[chunk]  # (k, r, r)
        svals = np.linalg.svd(Ms, compute_uv=False)
        ok = svals[:, -1] > svals[:, 0] * 1e-12
        if not ok.any():
            continue
        y = np.linalg.solve(Ms[ok], -b[chunk[ok]][..., None])[..., 0]
        best = max(best, float(np.abs(y @ Q.T).max()))
    return best


def global_box(net: Network) -> tuple[np.ndarray, np.ndarray, bool]:
    """(lo, hi, proven): the default box standing for the whole input space. `proven` is True
    when every linear region is known to meet it (no or one hidden layer, first-layer vertices
    computed), False when it is a heuristic."""
    weights, biases, _ = net.mlp()
    n = weights[0].shape[1]
    if len(weights) == 1:
        return -np.ones(n), np.ones(n), True
    r = arrangement_radius(weights[0], biases[0])
    if r is None:
        radius, proven = GLOBAL_FALLBACK_RADIUS, False
    else:
        radius, proven = GLOBAL_MARGIN * (1.0 + r), len(weights) == 2
    radius *= DEEP_GROWTH ** (len(weights) - 2)
    return -radius * np.ones(n), radius * np.ones(n), proven


# ------------------------------------------------------------------------ formulation
@dataclass
class MipModel:
    """A built program and what is needed to read its solution."""

    problem: Any  # cvxpy.Problem
    x: Any  # input variable
    v: Any  # direction variable
    deltas: list[Any]  # per hidden layer: binary variable over the unstable neurons, or None
    states: list[np.ndarray]  # per hidden layer: 1 active, 0 inactive, -1 unstable
    interval_bound: float  # proven upper bound without solving
    binaries: int
    cuts: list[Any] = field(default_factory=list)


def _scatter(width: int, idx: np.ndarray) -> np.ndarray:
    S = np.zeros((width, idx.size))
    S[idx, np.arange(idx.size)] = 1.0
    return S


def build_problem(weights: list[np.ndarray], biases: list[np.ndarray], norm: str,
                  lo: np.ndarray, hi: np.ndarray,
                  pre: list[tuple[np.ndarray, np.ndarray]] | None = None) -> MipModel:
    """The mixed-integer program max ||J(x)||_{p->p} over x in [lo, hi] (cvxpy, not solved);
    `pre` are pre-activation bounds valid on the box (interval bounds by default).

    Forward pass: z = W a + b, a = relu(z), one binary per neuron unstable on the box. Norm:
    with (C_k) = chain(weights, norm), max over u in the simplex of ||P u||_1 where
    d_0 = C_0 u, e = delta o d (exact big-M product), d_{k+1} = C_{k+1} e; the simplex needs no
    binaries (for fixed binaries the program is linear in u), the l1 norm one sign per entry.
    """
    import cvxpy as cp

    n = weights[0].shape[1]
    pre = interval_bounds(weights, biases, lo, hi) if pre is None else pre
    states = [np.where(zl >= 0, 1, np.where(zh <= 0, 0, -1)) for zl, zh in pre]
    x = cp.Variable(n)
    cons: list[Any] = [x >= lo, x <= hi]
    a: Any = x
    deltas: list[Any] = []
    binaries = 0
    for k, ((zl, zh), st) in enumerate(zip(pre, states)):
        z = weights[k] @ a + biases[k]
        on, unst = np.nonzero(st == 1)[0], np.nonzero(st == -1)[0]
        parts = []
        if on.size:
            parts.append(_scatter(st.size, on) @ z[on])
        if unst.size:
            delta = cp.Variable(unst.size, boolean=True)
            au = cp.Variable(unst.size)
            zu, lu, uu = z[unst], zl[unst], zh[unst]
            cons += [au >= 0, au >= zu, au <= cp.multiply(uu, delta),
                     au <= zu - cp.multiply(lu, 1 - delta)]
            parts.append(_scatter(st.size, unst) @ au)
            deltas.append(delta)
            binaries += unst.size
        else:
            deltas.append(None)
        a = sum(parts[1:], parts[0]) if parts else np.zeros(st.size)
    mats, order = chain(weights, norm)
    gates = [states[k] for k in order]
    dbounds = derivative_bounds(mats, gates)
    u = cp.Variable(mats[0].shape[1], nonneg=True)
    cons.append(cp.sum(u) == 1)
    d: Any = mats[0] @ u
    for step, k in enumerate(order):
        st, delta = states[k], deltas[k]
        dl, dh = dbounds[step]
        on, unst = np.nonzero(st == 1)[0], np.nonzero(st == -1)[0]
        parts = []
        if on.size:
            parts.append(_scatter(st.size, on) @ d[on])
        if unst.size:
            eu = cp.Variable(unst.size)
            du, dlu, dhu = d[unst], dl[unst], dh[unst]
            cons += [eu <= du - cp.multiply(dlu, 1 - delta),
                     eu >= du - cp.multiply(dhu, 1 - delta),
                     eu <= cp.multiply(dhu, delta), eu >= cp.multiply(dlu, delta)]
            parts.append(_scatter(st.size, unst) @ eu)
        e = sum(parts[1:], parts[0]) if parts else np.zeros(st.size)
        d = mats[step + 1] @ e
    y_lo, y_hi = dbounds[-1]
    out = mats[-1].shape[0]
    t = cp.Variable(out)
    sign = cp.Variable(out, boolean=True)
    big = 2 * np.maximum(np.abs(y_lo), np.abs(y_hi))
    cons += [t <= d + cp.multiply(big, 1 - sign), t <= -d + cp.multiply(big, sign)]
    binaries += out
    problem = cp.Problem(cp.Maximize(cp.sum(t)), cons)
    return MipModel(problem, x, u, deltas, states, interval_norm_bound(y_lo, y_hi), binaries)


# ------------------------------------------------------------------------ solving
@dataclass(frozen=True)
class Solve:
    status: str  # cvxpy status
    value: float | None  # incumbent objective
    upper: float | None  # the solver's proven bound, when it reports one
    pattern: list[np.ndarray] | None  # full 0/1 pattern per hidden layer
    x: np.ndarray | None
    seconds: float


def solve_problem(model: MipModel, solver: str, time_limit: float | None) -> Solve:
    """Solve the program once; read the incumbent, its pattern and the proven bound."""
    import cvxpy as cp

    start = time.perf_counter()
    problem = model.problem
    if model.cuts:
        problem = cp.Problem(problem.objective, problem.constraints + model.cuts)
    try:
        with warnings.catch_warnings(), native_silence():
            # an inaccurate status is reported through `status`, not as a warning
            warnings.simplefilter("ignore")
            problem.solve(solver=solver, verbose=False, **backends.mip_options(solver, time_limit))
    except cp.error.SolverError as exc:
        return Solve(f"solver_error: {exc}", None, None, None, None,
                     time.perf_counter() - start)
    status = str(problem.status)
    value = problem.value
    value = None if value is None or not np.isfinite(value) else float(value)
    upper = None
    info = problem.solver_stats.extra_stats if problem.solver_stats else None
    if solver == "HIGHS" and info is not None:
        dual, primal = getattr(info, "mip_dual_bound", None), getattr(
            info, "objective_function_value", None)
        if dual is not None and np.isfinite(dual):
            if value is not None and primal is not None and np.isfinite(primal):
                upper = value + abs(dual - primal)  # cvxpy minimises -objective
            elif value is None:
                upper = -dual if status != cp.OPTIMAL else None
    if status == cp.OPTIMAL and upper is None and value is not None:
        upper = value * (1 + backends.MIP_REL_GAP) + backends.MIP_ABS_GAP
    pattern = xval = None
    if value is not None and model.x.value is not None:
        xval = np.asarray(model.x.value, dtype=np.float64)
        pattern = []
        for st, delta in zip(model.states, model.deltas):
            p = (st == 1).astype(np.float64)
            if delta is not None and delta.value is not None:
                p[st == -1] = np.round(np.asarray(delta.value).ravel())
            pattern.append(p)
    return Solve(status, value, upper, pattern, xval, time.perf_counter() - start)


def pattern_jacobian(weights: list[np.ndarray], pattern: list[np.ndarray]) -> np.ndarray:
    J = weights[0]
    for W, s in zip(weights[1:], pattern):
        J = W @ (s[:, None] * J)
    return J




def _no_good(model: MipModel, pattern: list[np.ndarray]) -> Any | None:
    """A constraint cutting off exactly this assignment of the unstable binaries."""
    import cvxpy as cp

    terms = []
    for st, delta, p in zip(model.states, model.deltas, pattern):
        if delta is None:
            continue
        cur = p[st == -1]
        terms.append(cp.sum(cp.multiply(1 - cur, delta)) + cp.sum(cp.multiply(cur, 1 - delta)))
    if not terms:
        return None
    return cp.sum(cp.hstack(terms)) >= 1


def sampled_norms(weights: list[np.ndarray], biases: list[np.ndarray], X: np.ndarray,
                  norm: str) -> np.ndarray:
    """||J(x)||_{p->p} at the rows of X (the Jacobian of the region each point lies in)."""
    order = np.inf if norm == "inf" else 1
    a, J = X.T, np.broadcast_to(weights[0], (X.shape[0], *weights[0].shape))
    for W, b, Wn in zip(weights[:-1], biases[:-1], weights[1:]):
        z = W @ a + b[:, None]
        gate = (z > 0).T.astype(np.float64)  # (P, width)
        a = np.maximum(z, 0)
        J = Wn @ (gate[:, :, None] * J)
    return np.linalg.norm(J, ord=order, axis=(1, 2))


def _norm(J: np.ndarray, norm: str) -> float:
    return float(np.linalg.norm(J, ord=np.inf if norm == "inf" else 1)) if J.size else 0.0


# ------------------------------------------------------------------------ the method
@method("mip", kind="exact", cost="exhaustive", norms=("inf", "1"), relu_only=True, mlp_only=True,
        domain="optional", domain_kinds=("box",),
        summary="exact l_inf/l_1 by a mixed-integer program (lipMIP), global or over a box")
def mip(net: Network, *, norm: str = "inf", domain: Domain | None = None,
        time_limit: float | None = None, solver: str | None = None,
        global_radius: float | None = None, tighten: bool = True) -> Bound:
    """Exact l_inf or l_1 Lipschitz constant of a ReLU MLP by mixed-integer programming.

    Reference: Jordan & Dimakis, "Exactly computing the local Lipschitz constant of ReLU
    networks", NeurIPS 2020 (lipMIP). Idea: ReLU forward pass and the Jacobian-vector product
    through the same binaries (big-M from interval bounds over the box, tightened by LP when
    `tighten`), the l1 norm by sign binaries; solved with SCIP when installed, else HiGHS
    (`solver=` forces any installed cvxpy MIP solver).
    Global constant: computed over a box. A ReLU net's global constant equals its constant
    over a box only if every linear region meets the box. The default box is centred at 0
    with half-width 2 (1 + r), r the largest |coordinate| of a vertex of the first layer's
    hyperplane arrangement (`global_radius=` overrides it): for one hidden layer every region
    meets it (proven, certified); for deeper nets it is a heuristic, so the result is
    returned as kind "lower" (the best region found is a certified lower bound on the global
    constant; the box's exact value and proven bound are in details). With a box domain the
    value is the local constant over the box.
    Without a time limit, programs with more than 200 binaries or 64 inputs are refused.
    Guarantee: exact when the solver proves optimality, the optimal pattern's region is
    verified to meet the box (witness x inside it) and no sampled point of the box beats it;
    otherwise (time limit, solver trouble)
    kind "upper" with the solver's proven bound (or the interval bound), the incumbent and
    its witness in details.
    """
    weights, biases, _ = net.mlp()
    start = time.perf_counter()
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise InputError(f"mip: time_limit must be positive, got {time_limit}")
    lo, hi, proven_box, details = _search_box(net, domain, global_radius)
    name = backends.mip_solver(solver)
    n_in = weights[0].shape[1]
    if time_limit is None and n_in > MAX_UNTIMED_INPUTS:
        raise UnsupportedError(
            f"mip: {n_in} inputs exceed the {MAX_UNTIMED_INPUTS} solved without a time limit "
            "(the solve time of such programs is unpredictable, hours or more): pass "
            "time_limit=S (--time-limit) for an anytime answer, the proven bound on time-out")
    model = _scaled_model(weights, biases, norm, lo, hi, tighten=tighten, start=start,
                          time_limit=time_limit)
    details.update(solver=name, binaries=model.binaries,
                   unstable=[int(np.sum(s == -1)) for s in model.states])
    if time_limit is None and model.binaries > MAX_UNTIMED_BINARIES:
        raise UnsupportedError(
            f"mip: {model.binaries} binary variables exceed the {MAX_UNTIMED_BINARIES} solved "
            "without a time limit (the solve time grows exponentially with them): pass "
            "time_limit=S (--time-limit) for an anytime answer, the proven bound on time-out, "
            "or a smaller box")
    inc = _solve_verified(model, weights, biases, norm, lo, hi, name, start, time_limit)
    if inc.exact:
        _cross_check(inc, model, weights, biases, norm, lo, hi, details)
    _account_for_slivers(inc, details)
    details.update(status=inc.status, solves=inc.solves, rejected_patterns=inc.rejected,
                   interval_bound=model.interval_bound)
    if inc.x is not None:
        details["witness"] = {"x": inc.x}
        if inc.pattern is not None:
            details["witness"]["pattern"] = [p.astype(int) for p in inc.pattern]
        details["incumbent"] = inc.value
    timeout = inc.status == "user_limit" or (time_limit is not None
                                             and time.perf_counter() - start >= time_limit)
    seconds = time.perf_counter() - start
    if not proven_box:
        # over a box that may miss regions, the box's constant (or its proven bound) says
        # nothing above the global constant; the best region found is a certified lower
        # bound on it (its Jacobian is attained inside a full-dimensional region)
        details["reason"] = (f"box did not cover every region: the program ran over "
                             f"[{lo.min():g}, {hi.max():g}]^n, which is not proven to meet "
                             "every linear region; its best region is a lower bound")
        details["box_upper_bound"] = max(inc.upper, inc.value)
        details["exact_over_box"] = bool(inc.exact)
        found = inc.x is not None and math.isfinite(inc.value)
        return Bound("mip", "lower", inc.value if found else 0.0, norm, certified=found,
                     status="ok" if inc.exact else ("timeout" if timeout else "inaccurate"),
                     seconds=seconds, domain=domain, details=details)
    if inc.exact:
        return Bound("mip", "exact", inc.value, norm, certified=True, seconds=seconds,
                     domain=domain, details=details)
    return Bound("mip", "upper", max(inc.upper, inc.value), norm, certified=True,
                 status="timeout" if timeout else "inaccurate", seconds=seconds,
                 domain=domain, details=details)


def _search_box(net: Network, domain: Domain | None, global_radius: float | None
                ) -> tuple[np.ndarray, np.ndarray, bool, dict[str, Any]]:
    """(lo, hi, proven, details): the box the program runs over. A domain's own box; for
    the global constant `global_radius` or the default `global_box`, `proven` saying
    whether every linear region is known to meet it."""
    details: dict[str, Any] = {}
    if domain is not None:
        return domain.lower.ravel(), domain.upper.ravel(), True, details
    if global_radius is not None:
        if not (math.isfinite(global_radius) and global_radius > 0):
            raise InputError(f"mip: global_radius must be positive, got {global_radius}")
        n = net.input_dim
        lo, hi, proven = -global_radius * np.ones(n), global_radius * np.ones(n), False
    else:
        lo, hi, proven = global_box(net)
    details["box"] = {"lower": float(lo.min()), "upper": float(hi.max())}
    if not proven:
        details["warning"] = (
            f"global constant computed over the box [{lo.min():g}, {hi.max():g}]^n; it "
            "equals the global constant only if every linear region meets this box (not "
            "verified for this network): it is reported as a lower bound")
    return lo, hi, proven, details


def _scaled_model(weights: list[np.ndarray], biases: list[np.ndarray], norm: str,
                  lo: np.ndarray, hi: np.ndarray, *, tighten: bool, start: float,
                  time_limit: float | None) -> MipModel:
    """The program over [lo, hi], built on the box divided by its largest |coordinate|.

    relu is positively homogeneous: the forward pass over the box divided by `unit` (biases
    too) has the same activation patterns, and its big-M constants are O(1) on large boxes.
    With `tighten`, at most a fifth of the time limit goes to LP-tightening them."""
    unit = max(1.0, float(np.max(np.abs(np.concatenate([lo, hi])))))
    biases_u = [b / unit for b in biases]
    pre = None
    if tighten:
        budget = TIGHTEN_SECONDS if time_limit is None else time_limit / 5
        pre = lp_bounds(weights, biases_u, lo / unit, hi / unit, start + budget)
    return build_problem(weights, biases_u, norm, lo / unit, hi / unit, pre)


@dataclass
class _Incumbent:
    """The best verified region so far and the proven bound, as the solve loop leaves them."""

    upper: float
    value: float = -math.inf
    x: np.ndarray | None = None
    pattern: list[np.ndarray] | None = None
    sliver: float = -math.inf  # largest norm of a pattern cut off as too thin to resolve
    exact: bool = False
    status: str = "none"
    solves: int = 0
    rejected: int = 0


def _solve_verified(model: MipModel, weights: list[np.ndarray], biases: list[np.ndarray],
                    norm: str, lo: np.ndarray, hi: np.ndarray, name: str, start: float,
                    time_limit: float | None) -> _Incumbent:
    """Solve, then verify the solver's pattern: its region must hold a ball inside the box
    (the witness), and its Jacobian's norm is recomputed in float64. A pattern with no such
    region (a tolerance artefact) is cut off and the program solved again."""
    scale = 1.0 + float(np.max(np.abs(np.concatenate([lo, hi]))))
    eps, floor = FULL_DIM_RADIUS * scale, SLIVER_RADIUS * scale
    inc = _Incumbent(upper=model.interval_bound)
    while True:
        remaining = None if time_limit is None else time_limit - (time.perf_counter() - start)
        if remaining is not None and remaining <= 0:
            inc.status = "user_limit"
            return inc
        sol = solve_problem(model, name, remaining)
        inc.solves += 1
        inc.status = sol.status
        if sol.upper is not None:
            inc.upper = min(inc.upper, sol.upper * (1 + BOUND_MARGIN))
        if sol.pattern is None:
            return inc
        radius, centre = region_ball(weights, biases, sol.pattern, lo, hi)
        if radius > eps:
            val = _norm(pattern_jacobian(weights, sol.pattern), norm)
            if val > inc.value:
                inc.value, inc.x, inc.pattern = val, centre, sol.pattern
            inc.exact = (sol.status == "optimal"
                         and val >= inc.upper * (1 - EXACT_RTOL) - backends.MIP_ABS_GAP)
            return inc
        # the solver's pattern has no full-dimensional region in the box: cut it off
        if radius > floor:  # ... or one too thin to resolve: remember its slope
            inc.sliver = max(inc.sliver, _norm(pattern_jacobian(weights, sol.pattern), norm))
        inc.rejected += 1
        cut = _no_good(model, sol.pattern)
        if cut is None or inc.solves > MAX_RESOLVES:
            return inc
        model.cuts.append(cut)


def _cross_check(inc: _Incumbent, model: MipModel, weights: list[np.ndarray],
                 biases: list[np.ndarray], norm: str, lo: np.ndarray, hi: np.ndarray,
                 details: dict[str, Any]) -> None:
    """Check an optimality claim against random points of the box: one that beats the
    optimum withdraws the claim (the interval bound is reported instead)."""
    widest = max(W.shape[0] for W in weights)
    count = max(1, min(SAMPLES, SAMPLE_ELEMENTS // (widest * weights[0].shape[1])))
    X = lo + (hi - lo) * np.random.default_rng(0).random((count, lo.size))
    sampled = sampled_norms(weights, biases, X, norm)
    k = int(np.argmax(sampled))
    if sampled[k] > inc.value * (1 + EXACT_RTOL) + backends.MIP_ABS_GAP:
        details["message"] = (f"the solver's optimum {inc.value:.9g} is beaten by a sampled "
                              f"point ({sampled[k]:.9g}); its optimality claim is not "
                              "trusted and the interval bound is reported")
        inc.exact, inc.status, inc.upper = False, "inaccurate", model.interval_bound
        inc.value, inc.x, inc.pattern = float(sampled[k]), X[k], None


def _account_for_slivers(inc: _Incumbent, details: dict[str, Any]) -> None:
    """A region too thin to resolve was cut off: the constant is at most max(upper, its
    slope), and an optimum below that slope is not exact."""
    inc.upper = max(inc.upper, inc.sliver)
    if inc.exact and inc.sliver > inc.value * (1 + EXACT_RTOL) + backends.MIP_ABS_GAP:
        inc.exact, inc.status = False, "inaccurate"
        details["message"] = (f"a region too thin to resolve (relative width < "
                              f"{FULL_DIM_RADIUS:g}) has slope {inc.sliver:.9g}: not proven "
                              "exact")
