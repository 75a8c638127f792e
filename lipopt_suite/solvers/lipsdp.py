"""LipSDP-Neuron and LipSDP-Layer: formulation, solver choice, and the certified answer.

For an MLP f(x) = W_{K-1} phi(... phi(W_0 x)) whose activations have slopes in [a_k, b_k],
LipSDP (Fazlyab et al., NeurIPS 2019) finds the least rho such that, for multipliers
T_k >= 0 (diagonal per hidden layer k = 1..K-1), M(rho, T) <= 0 (numerics/lmi.py), and then
L_2(f) <= sqrt(rho). Solver answers are not bounds: after every solve only the multipliers
T are kept and `certify_multipliers` (numerics/lmi.py) computes in float64 the least rho
for them and proves the LMI at a slightly larger rho' with a rounding-aware Cholesky test.

Three ways to propose multipliers, chosen by the shape of the LMI (backends.py):
- CVXOPT's interior-point cone solver with the LMI's rank-two structure in its KKT solver
  (solvers/lipsdp_cvxopt.py), the default for most LMIs;
- the first-order eigenvalue optimisation in torch (solvers/lipsdp_eig.py, solver "EIG"),
  the default for wide LMIs of shallow nets or with few multipliers (LipSDP-Layer), very
  wide ones, and whenever a device is given (`backends.first_order_first`);
- cvxpy with MOSEK, SDPA, SCS or Clarabel on the program built by `build_problem`, also the
  path of the chordal decomposition.

Two exact transformations keep the SDP small and well scaled: a first layer wider than
the next is replaced by (W_0 W_0^T)^(1/2), which has the same Gram matrix and so the same
constant and the same SDP value; and each layer is divided by a power of two near its
spectral norm, the scale moving to rho and T by a diagonal congruence. The certificate is
always checked on the original weights.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError
from ..network import Network
from ..numerics.blas import single_threaded
from ..numerics.lmi import (
    UNIT_ROUNDOFF,
    Certificate,
    LMIData,
    certify_multipliers,
    compress_first_layer,
    expand,
    layer_scales,
    network_data,
    normalise,
    repair_multipliers,
    split_data,
    unscale,
)
from ..quiet import native_silence
from ..registry import method
from . import backends

log = logging.getLogger(__name__)

VARIANTS = ("neuron", "layer")
# A retry after a failed or loose certificate divides the SCS tolerance by this.
RETRY_EPS_FACTOR = 100.0
# SCS is re-run (warm-started, tighter) at most this many times while the certified value
# exceeds the solver's own by more than REFINE_GAP (relative).
SCS_REFINEMENTS = 1
REFINE_GAP = 2e-6
# A solver tried once the time limit has passed gets this many seconds.
LATE_SECONDS = 1.0


# ------------------------------------------------------------------------ formulation
def lmi_coefficients(data: LMIData, variant: str) -> tuple[Any, Any]:
    """(A, f0) with vec(M(rho, T)) = f0 + A @ [rho, t] (row-major vec, N = data.dim).

    `t` holds one multiplier per hidden neuron ("neuron") or per hidden layer ("layer").
    A is a scipy CSR matrix of shape (N*N, 1 + num_vars); f0 a dense vector of length N*N
    (only the last diagonal block, W_{K-1}^T W_{K-1}, is non-zero).
    """
    import scipy.sparse as sp

    if variant not in VARIANTS:
        raise InputError(f"unknown LipSDP variant {variant!r}: use one of {VARIANTS}")
    N, off = data.dim, data.offsets
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    def put(r: Any, c: Any, var: Any, v: Any) -> None:
        r, c, var, v = np.broadcast_arrays(r, c, var, v)
        rows.append((r * N + c).ravel())
        cols.append(var.ravel())
        vals.append(v.ravel())

    n0 = data.sizes[0]
    i0 = np.arange(n0)
    put(i0, i0, np.zeros(n0, dtype=np.int64), np.full(n0, -1.0))
    first_var = 1
    for k in range(1, len(data.weights)):
        W = data.weights[k - 1]
        a, b = data.slopes[k - 1]
        nk, nprev = W.shape
        j = np.arange(nk)
        var = first_var + j if variant == "neuron" else np.full(nk, first_var)
        rj = off[k] + j  # row of neuron j of hidden layer k
        ci = off[k - 1] + np.arange(nprev)
        # (a + b) W^T T in block (k-1, k) and its transpose
        put(ci[None, :], rj[:, None], var[:, None], (a + b) * W)
        put(rj[:, None], ci[None, :], var[:, None], (a + b) * W)
        put(rj, rj, var, np.full(nk, -2.0))
        if a * b != 0.0:  # -2 a b W^T T W in block (k-1, k-1): one rank-one term per neuron
            outer = W[:, :, None] * W[:, None, :]  # (nk, nprev, nprev)
            put(ci[None, :, None], ci[None, None, :], var[:, None, None], -2 * a * b * outer)
        first_var += nk if variant == "neuron" else 1
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(N * N, first_var))
    f0 = np.zeros((N, N))
    WL = data.weights[-1]
    last = off[len(data.weights) - 1]
    f0[last:, last:] = WL.T @ WL
    return A, f0.ravel()


def build_problem(data: LMIData, variant: str, *, chordal: bool = False
                  ) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The LipSDP program as a cvxpy Problem: (problem, rho, t, info).

    With `chordal=True` the single LMI -M >= 0 is replaced by one PSD block per maximal
    clique of its (chordal) block sparsity graph, with the same optimal value.
    """
    import cvxpy as cp

    A, f0 = lmi_coefficients(data, variant)
    N = data.dim
    rho = cp.Variable(name="rho")
    t = cp.Variable(data.num_vars(variant), nonneg=True, name="t")
    x = cp.hstack([cp.reshape(rho, (1,), order="C"), t])
    info: dict[str, Any] = {"lmi_dim": N, "variables": 1 + data.num_vars(variant)}
    if chordal:
        from .chordal import decomposed_constraints

        constraints, cinfo = decomposed_constraints(A, f0, x, data.blocks)
        info.update(cinfo)
    else:
        negM = cp.reshape(-(A @ x) - f0, (N, N), order="C")
        constraints = [negM >> 0]
        info["cliques"] = [list(range(len(data.blocks)))]
    return cp.Problem(cp.Minimize(rho), constraints), rho, t, info


# ------------------------------------------------------------------------ solving
@dataclass
class Solution:
    """What one solver returned: multipliers in the caller's coordinates and its rho."""

    solver: str
    status: str  # cvxpy status, or "error"/"timeout"
    rho: float = float("nan")
    multipliers: list[np.ndarray] | None = None
    seconds: float = 0.0
    iterations: int | None = None
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    certificate: Certificate | None = None

    @property
    def inaccurate(self) -> bool:
        return "inaccurate" in self.status


def prepared(data: LMIData) -> tuple[LMIData, np.ndarray, LMIData]:
    """(compressed instance, its layer scales, compressed and normalised instance)."""
    small = compress_first_layer(data)
    scales = layer_scales(small)
    return small, scales, normalise(small, scales)


def certified(data: LMIData, multipliers: list[np.ndarray]) -> Certificate:
    """`certify_multipliers`, and the ECLipsE-Fast repair when that fails."""
    cert = certify_multipliers(data, multipliers)
    if not cert.certified:
        cert = repair_multipliers(data, multipliers) or cert
    return cert


def solve_sdp(data: LMIData, variant: str, solver: str, *, eps: float | None = None,
              time_limit: float | None = None, chordal: bool = False, device: Any = None,
              progress: bool = False) -> Solution:
    """Solve and certify one LipSDP instance with one solver in this process.

    The instance is compressed and normalised first; the multipliers come back in the
    coordinates of `data`. Solver failures are returned in `status`/`message`, except a
    MOSEK licence error, which propagates (the caller falls back to another solver).
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown LipSDP variant {variant!r}: use one of {VARIANTS}")
    if solver == backends.FIRST_ORDER:
        return _solve_first_order(data, variant, time_limit=time_limit, device=device,
                                  progress=progress)
    if solver == "CVXOPT" and not chordal:
        return _solve_structured(data, variant, eps=eps, time_limit=time_limit)
    return _solve_cvxpy(data, variant, solver, eps=eps, time_limit=time_limit,
                        chordal=chordal)


def _solve_structured(data: LMIData, variant: str, *, eps: float | None,
                      time_limit: float | None) -> Solution:
    """CVXOPT's cone solver with the structured KKT solver (solvers/lipsdp_cvxopt.py)."""
    from .lipsdp_cvxopt import solve_structured

    start = time.perf_counter()
    small, scales, scaled = prepared(data)
    deadline = None if time_limit is None else start + float(time_limit)
    ans = solve_structured(scaled, variant, eps=eps, deadline=deadline)
    info: dict[str, Any] = {"lmi_dim": scaled.dim, "variables": 1 + scaled.num_vars(variant),
                            "compressed_first_layer": small is not data,
                            "cliques": [list(range(len(scaled.blocks)))], "eps": eps}
    status = {"optimal": "optimal", "inaccurate": "optimal_inaccurate"}.get(ans.status,
                                                                          ans.status)
    sol = Solution("CVXOPT", status, iterations=ans.iterations, message=ans.message,
                   info=info)
    # the final iterate first, then (after a time limit or a failure) the last ones seen
    tried = [ans.x] if ans.x is not None else list(reversed(ans.candidates))
    for x in tried:
        rho, T = unscale(scales, float(x[0]), expand(data, variant, x[1:]))
        cert = certified(data, T)
        if sol.certificate is None or cert.value < sol.certificate.value:
            sol.rho, sol.multipliers, sol.certificate = rho, T, cert
        if cert.certified:
            break
    sol.seconds = time.perf_counter() - start
    return sol


def _solve_first_order(data: LMIData, variant: str, *, time_limit: float | None,
                       device: Any, progress: bool) -> Solution:
    """The first-order eigenvalue optimisation (solvers/lipsdp_eig.py)."""
    from .lipsdp_eig import solve_first_order

    start = time.perf_counter()
    res = solve_first_order(data, variant, time_limit=time_limit, device=device,
                            progress=progress)
    small = compress_first_layer(data)
    info: dict[str, Any] = {"lmi_dim": small.dim, "variables": 1 + small.num_vars(variant),
                            "compressed_first_layer": small is not data,
                            "device": str(device or "cpu"),
                            "history": [[round(t, 3), v] for t, v in res.history]}
    status = {"ok": "optimal", "timeout": "user_limit"}.get(res.status, res.status)
    return Solution(backends.FIRST_ORDER, status, rho=res.rho_estimate,
                    multipliers=res.multipliers, seconds=time.perf_counter() - start,
                    iterations=res.iterations, message=res.message, info=info,
                    certificate=res.certificate)


def _solve_cvxpy(data: LMIData, variant: str, solver: str, *, eps: float | None,
                 time_limit: float | None, chordal: bool) -> Solution:
    """The program of `build_problem` through cvxpy (SCS refined while its certified value
    is loose)."""
    import cvxpy as cp

    start = time.perf_counter()
    small, scales, scaled = prepared(data)
    prob, rho, t, info = build_problem(scaled, variant, chordal=chordal)
    info["compressed_first_layer"] = small is not data
    deadline = None if time_limit is None else start + float(time_limit)
    e = backends.SCS_EPS if (eps is None and solver == "SCS") else eps
    best: Solution | None = None
    for round_ in range(1 + (SCS_REFINEMENTS if solver == "SCS" else 0)):
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            break
        opts = backends.sdp_options(solver, eps=e, time_limit=left)
        try:
            with warnings.catch_warnings(), native_silence():
                # an inaccurate solve is reported in `status`
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                prob.solve(solver=solver, warm_start=round_ > 0, verbose=False, **opts)
        except cp.error.SolverError as exc:
            if best is not None:
                break
            return Solution(solver, "error", seconds=time.perf_counter() - start,
                            message=" ".join(str(exc).split())[:300], info=info)
        stats = prob.solver_stats
        sol = Solution(solver, str(prob.status), seconds=time.perf_counter() - start,
                       iterations=getattr(stats, "num_iters", None), info=dict(info))
        sol.info["eps"] = e
        if rho.value is None or t.value is None:
            sol.message = f"no solution ({prob.status})"
            return best or sol
        sol.rho, sol.multipliers = unscale(scales, float(rho.value),
                                           expand(data, variant, t.value))
        sol.certificate = certified(data, sol.multipliers)
        if best is None or sol.certificate.value < best.certificate.value:
            if best is not None:
                sol.iterations = (sol.iterations or 0) + (best.iterations or 0)
            best = sol
        # SCS stops at the boundary of the cone, where the certified value can exceed the
        # optimum by ~1e-4: tighten the tolerance (warm-started) while that gap is large
        gap = best.certificate.value / math.sqrt(max(best.rho, 1e-300)) - 1
        if best.certificate.certified and gap <= REFINE_GAP:
            break
        e = (e or backends.SCS_EPS) / RETRY_EPS_FACTOR
    if best is None:
        return Solution(solver, "timeout", seconds=time.perf_counter() - start,
                        message="time limit reached before the solve", info=info)
    best.seconds = time.perf_counter() - start
    return best


def solve_sdp_child(data: LMIData, variant: str, solver: str, eps: float | None,
                    time_limit: float | None, chordal: bool) -> Solution:
    """`solve_sdp` for a child process (module level so that it can be spawned)."""
    with single_threaded():
        return solve_sdp(data, variant, solver, eps=eps, time_limit=time_limit,
                         chordal=chordal)


def run_solver(data: LMIData, variant: str, solver: str, *, eps: float | None,
               time_limit: float | None, chordal: bool, device: Any = None,
               progress: bool = False) -> Solution:
    """`solve_sdp`, in a child process where the solver could take the process down."""
    blocks = compress_first_layer(data).blocks
    # the largest PSD cone the solver sees: the whole LMI, or two consecutive layers
    cone = max(a + b for a, b in zip(blocks, blocks[1:])) if chordal else sum(blocks)
    if solver == "CLARABEL" and not backends.clarabel_in_process(cone):
        from ..limits import call_with_limit

        limit = None if time_limit is None else time_limit + 30.0
        out = call_with_limit(solve_sdp_child, data, variant, solver, eps, time_limit, chordal,
                              time_limit=limit)
        if out.status == "ok":
            return out.value
        return Solution(solver, out.status, message=out.message)
    return solve_sdp(data, variant, solver, eps=eps, time_limit=time_limit, chordal=chordal,
                     device=device, progress=progress)


# ------------------------------------------------------------------------ orchestration
@dataclass
class GroupResult:
    value: float
    certified: bool
    status: str  # Bound status
    raw_value: float
    details: dict[str, Any]


def _bound_status(sol: Solution, deadline: float | None) -> str:
    if sol.status in ("timeout", "user_limit"):
        return "timeout"
    if deadline is not None and time.perf_counter() >= deadline:
        return "timeout"
    if sol.inaccurate:
        return "inaccurate"
    return "ok"


def solve_group(data: LMIData, variant: str, *, solver: str | None, eps: float | None,
                deadline: float | None, chordal: bool, device: Any = None,
                progress: bool = False) -> GroupResult:
    """Solve and certify one (sub-)network: try the candidate solvers in order until one
    yields certified multipliers (repaired with the ECLipsE-Fast point if need be)."""
    if len(data.weights) == 1:
        cert = certify_multipliers(data, [])
        return GroupResult(cert.value, cert.certified, "ok", cert.value,
                           {"solver": None, "lmi_dim": 0, "note": "single layer: ||W||_2"})
    if any(not np.any(W) for W in data.weights):
        return GroupResult(0.0, True, "ok", 0.0, {"solver": None, "note": "a zero layer"})
    small = compress_first_layer(data)
    candidates = backends.iter_sdp_candidates(solver, lmi_dim=small.dim,
                                              hidden_layers=len(small.hidden),
                                              variables=small.num_vars(variant),
                                              chordal=chordal, device=device)
    tried: list[dict[str, Any]] = []
    fallback: GroupResult | None = None
    for name in candidates:
        late = deadline is not None and time.perf_counter() >= deadline
        if late and tried and name != backends.FIRST_ORDER:
            # past the limit only the first-order method is still worth a try: its start,
            # the ECLipsE-Fast point, is certified at once
            continue
        remaining = None if deadline is None else max(deadline - time.perf_counter(),
                                                      LATE_SECONDS)
        try:
            sol = run_solver(data, variant, name, eps=eps, time_limit=remaining,
                             chordal=chordal, device=device, progress=progress)
        except Exception as exc:  # noqa: BLE001 - a solver's own exception types
            if backends.is_licence_error(exc):
                log.debug("%s unusable (%s); falling back", name, exc)
                backends.mark_unusable(name)
                tried.append({"solver": name, "status": "unlicensed"})
                continue
            raise
        entry = {"solver": name, "status": sol.status, "eps": sol.info.get("eps", eps),
                 "seconds": sol.seconds, "iterations": sol.iterations}
        if sol.message:
            entry["message"] = sol.message
        tried.append(entry)
        if sol.multipliers is None:
            continue  # this solver cannot answer; try the next one
        cert = sol.certificate or certified(data, sol.multipliers)
        if not cert.certified:
            entry["certificate"] = cert.reason
            if sol.certificate is None:  # solve_sdp has already tried the repair
                cert = repair_multipliers(data, sol.multipliers) or cert
        raw = math.sqrt(max(sol.rho, 0.0))
        details = {"solver": name, "solver_status": sol.status, "raw_value": raw,
                   "rho": cert.rho, "rho_schur": cert.rho_schur,
                   "certificate_attempts": cert.attempts, "iterations": sol.iterations,
                   "solve_seconds": sol.seconds, **sol.info}
        if cert.reason:
            details["certificate"] = cert.reason
        status = _bound_status(sol, deadline)
        if cert.certified:
            details["tried"] = tried
            return GroupResult(cert.value, True, status, raw, details)
        if fallback is None:
            details["tried"] = tried
            fallback = GroupResult(raw, False, "inaccurate" if status == "ok" else status,
                                   raw, details)
    if fallback is not None:
        fallback.details["tried"] = tried
        return fallback
    if all(t.get("status") == "unlicensed" for t in tried):
        return GroupResult(math.nan, False, "unavailable", math.nan,
                           {"solver": None, "tried": tried,
                            "message": "no usable SDP solver (install cvxopt or scs)"})
    timed_out = deadline is not None and time.perf_counter() >= deadline
    return GroupResult(math.nan, False, "timeout" if timed_out else "error", math.nan,
                       {"solver": None, "tried": tried})


STATUS_ORDER = ("ok", "inaccurate", "timeout", "unavailable", "error")


def lipsdp_bound(net: Network, variant: str, *, solver: str | None = None,
                 time_limit: float | None = None, split: int | None = None,
                 chordal: bool = False, eps: float | None = None, device: Any = None,
                 progress: bool = False) -> Bound:
    """LipSDP on an MLP, optionally split into sub-networks of `split` weight layers."""
    name = f"lipsdp-{variant}"
    start = time.perf_counter()
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise InputError(f"time_limit must be positive, got {time_limit}")
    if eps is not None and not (math.isfinite(eps) and 0 < eps < 1):
        raise InputError(f"eps must lie in (0, 1), got {eps}")
    if split is not None and (isinstance(split, bool) or not isinstance(split, (int, np.integer))
                              or split < 1):
        raise InputError(f"split must be a positive whole number of layers, got {split!r}")
    if solver is not None:
        backends.resolve(solver)  # a forced solver that is not usable fails at once
    data = network_data(net)
    parts, joints = split_data(data, split) if split else ([data], [])
    deadline = None if time_limit is None else start + float(time_limit)
    with single_threaded():
        groups = [solve_group(p, variant, solver=solver, eps=eps, deadline=deadline,
                              chordal=bool(chordal), device=device, progress=bool(progress))
                  for p in parts]
    value, raw = math.prod(joints), math.prod(joints)
    for g in groups:
        value *= g.value
        raw *= g.raw_value
    # each product of non-negative floats rounds by at most u: cover it
    value *= 1 + 2 * (len(groups) + len(joints) + 1) * UNIT_ROUNDOFF
    certified_ = all(g.certified for g in groups)
    status = max((g.status for g in groups), key=STATUS_ORDER.index)
    details: dict[str, Any] = {"variant": variant, "raw_value": raw, "chordal": bool(chordal),
                               "split": split, "layer_sizes": data.sizes}
    if len(groups) == 1:
        details.update(groups[0].details)
        details["raw_value"] = raw
    else:
        details["groups"] = [{"value": g.value, "certified": g.certified, "status": g.status,
                              **g.details} for g in groups]
        details["activation_factors"] = joints
    if not certified_:
        details["warning"] = ("the solver's multipliers could not be certified: the value "
                              "is the solver's, not a proven bound")
    return Bound(name, "upper", value, "2", certified=certified_,
                 seconds=time.perf_counter() - start, status=status, details=details)


def _check_norm(name: str, norm: str) -> None:
    if norm != "2":
        raise InputError(f"{name} bounds the l2 constant only, not norm {norm}")


@method("lipsdp-neuron", kind="upper", cost="solver", norms=("2",), mlp_only=True, domain="never",
        summary="LipSDP-Neuron: SDP with one multiplier per neuron, certified a posteriori")
def lipsdp_neuron(net: Network, *, norm: str = "2", domain: Domain | None = None,
                  solver: str | None = None, time_limit: float | None = None,
                  split: int | None = None, chordal: bool = False, eps: float | None = None,
                  device: str | None = None, progress: bool = False) -> Bound:
    """LipSDP-Neuron: the slope-restricted activations' incremental quadratic constraints
    with a diagonal multiplier T (one entry per hidden neuron) in one LMI over all layers.

    Reference: Fazlyab, Robey, Hassani, Morari & Pappas, "Efficient and accurate estimation
    of Lipschitz constants for deep neural networks", NeurIPS 2019; the first-order path
    after Wang et al., ICLR 2024.
    Options: solver (force one: a cvxpy name such as cvxopt, scs, mosek, or "eig" for the
    first-order method), time_limit (s), split (sub-networks of that many weight layers,
    product of their bounds), chordal (decomposed LMI, same optimum), eps (solver
    tolerance), device (torch device of the first-order method; choosing one selects it),
    progress (a progress bar on stderr for the first-order method).
    Guarantee: certified upper bound on the global l2 constant when `certified` is True
    (the solver's multipliers checked a posteriori in float64 with rounding margins).
    """
    _check_norm("lipsdp-neuron", norm)
    return lipsdp_bound(net, "neuron", solver=solver, time_limit=time_limit, split=split,
                        chordal=chordal, eps=eps, device=device, progress=progress)


@method("lipsdp-layer", kind="upper", cost="solver", norms=("2",), mlp_only=True, domain="never",
        summary="LipSDP-Layer: SDP with one multiplier per layer, certified a posteriori")
def lipsdp_layer(net: Network, *, norm: str = "2", domain: Domain | None = None,
                 solver: str | None = None, time_limit: float | None = None,
                 split: int | None = None, chordal: bool = False, eps: float | None = None,
                 device: str | None = None, progress: bool = False) -> Bound:
    """LipSDP-Layer: LipSDP with T = lambda_k I on hidden layer k (fewer variables, a
    larger value than LipSDP-Neuron).

    Reference: Fazlyab, Robey, Hassani, Morari & Pappas, NeurIPS 2019.
    Options as lipsdp-neuron.
    Guarantee: certified upper bound on the global l2 constant when `certified` is True.
    """
    _check_norm("lipsdp-layer", norm)
    return lipsdp_bound(net, "layer", solver=solver, time_limit=time_limit, split=split,
                        chordal=chordal, eps=eps, device=device, progress=progress)
