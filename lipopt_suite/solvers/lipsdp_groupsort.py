"""LipSDP for GroupSort/MaxMin MLPs: the program (numerics/groupsort_lmi.py), its solve with
cvxpy, and the certified answer.

The matrix inequality is dense (the linear bypass of each sort links every later layer to
the earlier ones), of side n0 + (units of every stage): small for the nets this is meant
for (MaxMin 11-12-12-1: 23). The solver proposes multipliers; only `certify_groupsort`'s
value is reported as certified. Multipliers that fail it are first mixed with a feasible
anchor (`repair_groupsort`), then the solve is retried once with a small strict margin on
the hidden block of the LMI, which moves the solver's answer inside the cone. The solve
path (`certified_bound`) is shared with lipsdp-graph (solvers/lipsdp_graph.py).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError
from ..network import Network
from ..numerics.groupsort_lmi import (
    SortLMIData,
    anchor_multipliers,
    certify_groupsort,
    network_sort_data,
    repair_groupsort,
    split_multipliers,
)
from ..numerics.lmi import Certificate
from ..quiet import native_silence
from ..registry import method
from . import backends

# The retry after a failed certificate asks for -M >= MARGIN * scale on the hidden block
# (scale: the largest diagonal entry of C^T C), costing about that much in rho.
RETRY_MARGIN = 1e-7


def lmi_coefficients(data: SortLMIData) -> tuple[Any, np.ndarray]:
    """(A, f0) with vec(M(rho, t)) = f0 + A @ [rho, t] (row-major, N = data.dim), A sparse:
    each unit j of a stage with input row b_j, output column c_j and slopes [a, b]
    contributes t_j (-2ab b_j b_j^T + (a + b)(b_j e_c^T + e_c b_j^T) - 2 e_c e_c^T), built
    from the nonzeros of b_j only (b_j never reads its own column c_j)."""
    import scipy.sparse as sp

    N = data.dim
    i0 = np.arange(data.n0)
    rows: list[np.ndarray] = [i0 * N + i0]
    cols: list[np.ndarray] = [np.zeros(data.n0, dtype=np.int64)]
    vals: list[np.ndarray] = [np.full(data.n0, -1.0)]
    var = 1
    for s in data.stages:
        a, b = s.slopes
        j, k = np.nonzero(s.B)
        c = s.offset + j
        v = (a + b) * s.B[j, k]
        if a + b != 0.0:
            rows += [k * N + c, c * N + k]
            cols += [var + j, var + j]
            vals += [v, v]
        units = np.arange(s.size)
        rows.append((s.offset + units) * (N + 1))
        cols.append(var + units)
        vals.append(np.full(s.size, -2.0))
        if a * b != 0.0:
            for u in range(s.size):
                nz = np.flatnonzero(s.B[u])
                rows.append((nz[:, None] * N + nz[None, :]).ravel())
                cols.append(np.full(nz.size ** 2, var + u))
                vals.append((-2 * a * b * np.outer(s.B[u, nz], s.B[u, nz])).ravel())
        var += s.size
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(N * N, var))
    return A, (data.C.T @ data.C).ravel()


def build_problem(data: SortLMIData, margin: float = 0.0) -> tuple[Any, Any, Any]:
    """The program min rho s.t. -M(rho, t) >= margin * diag(0, I_hidden), t >= 0, as a cvxpy
    Problem: (problem, rho, t)."""
    import cvxpy as cp

    A, f0 = lmi_coefficients(data)
    N = data.dim
    rho = cp.Variable(name="rho")
    t = cp.Variable(data.num_vars, nonneg=True, name="t")
    x = cp.hstack([cp.reshape(rho, (1,), order="C"), t])
    negM = cp.reshape(-(A @ x) - f0, (N, N), order="C")
    if margin > 0:
        negM = negM - margin * np.diag(np.r_[np.zeros(data.n0), np.ones(N - data.n0)])
    return cp.Problem(cp.Minimize(rho), [negM >> 0]), rho, t


def candidates(forced: str | None, dim: int, method_name: str = "lipsdp-groupsort"
               ) -> list[str]:
    """Solvers to try in order: the forced one, else MOSEK when licensed, Clarabel on LMIs
    it handles in process (backends.CLARABEL_INPROCESS_MAX_DIM), SCS."""
    if forced is not None:
        name = backends.resolve(forced)
        if name == backends.FIRST_ORDER:
            raise InputError(f"{method_name}: solver 'eig' is not available here; use a "
                             "cvxpy solver (clarabel, scs, cvxopt, mosek)")
        return [name]
    out = []
    if backends.usable("MOSEK"):
        out.append("MOSEK")
    if dim <= backends.CLARABEL_INPROCESS_MAX_DIM and backends.usable("CLARABEL"):
        out.append("CLARABEL")
    if backends.usable("SCS"):
        out.append("SCS")
    return out


def solve(data: SortLMIData, solver: str, *, margin: float = 0.0, eps: float | None = None,
          time_limit: float | None = None) -> tuple[str, float, list[np.ndarray] | None, str]:
    """(status, solver rho, multipliers or None, message) of one solve."""
    import cvxpy as cp

    prob, rho, t = build_problem(data, margin)
    opts = backends.sdp_options(solver, eps=eps, time_limit=time_limit)
    try:
        with warnings.catch_warnings(), native_silence():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            prob.solve(solver=solver, verbose=False, **opts)
    except cp.error.SolverError as exc:
        return "error", math.nan, None, " ".join(str(exc).split())[:300]
    if rho.value is None or t.value is None:
        return str(prob.status), math.nan, None, f"no solution ({prob.status})"
    return str(prob.status), float(rho.value), split_multipliers(data, t.value), ""


@method("lipsdp-groupsort", kind="upper", cost="solver",
        norms=("2",), mlp_only=True, domain="never",
        groupsort=True,
        summary="LipSDP with GroupSort/MaxMin quadratic constraints, certified a posteriori")
def lipsdp_groupsort(net: Network, *, norm: str = "2", domain: Domain | None = None,
                     solver: str | None = None, time_limit: float | None = None,
                     eps: float | None = None) -> Bound:
    """LipSDP for MLPs with GroupSort/MaxMin (and slope-restricted elementwise) activations:
    each sort is a sorting network of MaxMin comparators, a comparator (a, b) ->
    (a - r, b + r) with r = relu(a - b); the ReLU constraint on r and the linear bypass give
    one dense LMI in (input, r) (numerics/groupsort_lmi.py), one multiplier per comparator.

    Reference: Pauli, Havens, Araujo, Garg, Khorrami, Allgöwer & Hu, "Novel quadratic
    constraints for extending LipSDP beyond slope-restricted activations", ICLR 2024 (the
    program), on LipSDP (Fazlyab et al., NeurIPS 2019). One MaxMin layer certifies 1.
    Options: solver (a cvxpy name: clarabel, scs, cvxopt, mosek), time_limit (s, per
    solve), eps (solver tolerance).
    Guarantee: certified upper bound on the global l2 constant when `certified` is True
    (multipliers checked a posteriori in float64, errors of the weight products bounded).
    """
    if norm != "2":
        raise InputError(f"lipsdp-groupsort bounds the l2 constant only, not norm {norm}")
    start = time.perf_counter()
    return certified_bound("lipsdp-groupsort", network_sort_data(net), start, solver=solver,
                           time_limit=time_limit, eps=eps)


def certified_bound(method_name: str, data: SortLMIData, start: float, *, solver: str | None,
                    time_limit: float | None, eps: float | None,
                    details: dict[str, Any] | None = None, sdp: bool = True) -> Bound:
    """Solve the program of `data` (solvers in the order of `candidates`, each retried once
    with a strict margin when its multipliers fail the certificate) and return the Bound
    of method `method_name`: certified only through `certify_groupsort`. The anchor
    multipliers are certified first and kept when no solver does better (`sdp` False:
    the anchor alone)."""
    if eps is not None and not (math.isfinite(eps) and 0 < eps < 1):
        raise InputError(f"eps must lie in (0, 1), got {eps}")
    details = {**(details or {}), "lmi_dim": data.dim, "variables": 1 + data.num_vars,
               "stages": [s.what for s in data.stages]}
    if data.num_vars == 0:
        cert = certify_groupsort(data, [])
        details["note"] = "no hidden layer: ||W||_2"
        return Bound(method_name, "upper", cert.value, "2", certified=cert.certified,
                     status="ok" if cert.certified else "inaccurate", details=details)
    # the anchor (a feasible point by a backward recursion, no solver): a certified
    # fallback, and the direction that repairs solver answers slightly outside the cone
    anchor = anchor_multipliers(data)
    fallback = certify_groupsort(data, anchor)
    details["anchor_value"] = fallback.value
    tried: list[dict[str, Any]] = []
    best: tuple[Certificate, float, str] | None = None
    scale = float(np.max(np.diag(data.C.T @ data.C), initial=0.0)) or 1.0
    for name in candidates(solver, data.dim, method_name) if sdp else []:
        for margin in (0.0, RETRY_MARGIN * scale):
            left = None if time_limit is None else time_limit - (time.perf_counter() - start)
            if left is not None and left < 1.0:
                if tried:  # the time limit is spent: keep what was found
                    break
                left = 1.0
            status, rho, T, message = solve(data, name, margin=margin, eps=eps,
                                            time_limit=left)
            entry: dict[str, Any] = {"solver": name, "status": status, "margin": margin}
            if message:
                entry["message"] = message
            tried.append(entry)
            if T is None:
                break
            cert = certify_groupsort(data, T)
            if not cert.certified:
                fixed = repair_groupsort(data, T, anchor)
                if fixed is not None:
                    entry["first_certificate"] = cert.reason
                    cert = fixed
            entry["certified"] = cert.certified
            if cert.reason:
                entry["certificate"] = cert.reason
            if best is None or (cert.certified and not best[0].certified) or (
                    cert.certified == best[0].certified and cert.value < best[0].value):
                best = (cert, math.sqrt(max(rho, 0.0)), name)
            if cert.certified and "first_certificate" not in entry:
                break  # a repaired answer still tries the margin (the better one is kept)
        if best is not None and best[0].certified:
            break
    details["tried"] = tried
    if fallback.certified and (best is None or not best[0].certified
                               or fallback.value < best[0].value):
        best = (fallback, fallback.value, "none (anchor multipliers)")
    if best is None:
        return Bound(method_name, "upper", math.nan, "2", certified=False,
                     status="unavailable" if not tried else "error",
                     seconds=time.perf_counter() - start,
                     details={**details, "message": "no SDP solver answered "
                              "(install clarabel or scs)"})
    cert, raw, name = best
    details.update({"solver": name, "raw_value": raw, "rho": cert.rho,
                    "rho_schur": cert.rho_schur, "certificate_attempts": cert.attempts})
    if not cert.certified:
        details["warning"] = ("the solver's multipliers could not be certified: the value "
                              "is the solver's, not a proven bound")
        return Bound(method_name, "upper", raw, "2", certified=False,
                     status="inaccurate", seconds=time.perf_counter() - start, details=details)
    return Bound(method_name, "upper", cert.value, "2", certified=True,
                 seconds=time.perf_counter() - start, details=details)
