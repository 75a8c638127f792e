"""LipSDP-Neuron and LipSDP-Layer, with an a-posteriori certificate of the solver's answer.

For an MLP f(x) = W_{K-1} phi(... phi(W_0 x)) whose activations have slopes in [a_k, b_k],
LipSDP (Fazlyab et al., NeurIPS 2019) finds the least rho such that, for multipliers
T_k >= 0 (diagonal per hidden layer k = 1..K-1),

    M(rho, T) = [A; B]^T [[-2 a b T, (a + b) T], [(a + b) T, -2 T]] [A; B]
                + diag(-rho I, 0, ..., 0, W_{K-1}^T W_{K-1})  <=  0,

and then L_2(f) <= sqrt(rho). The matrix is block tridiagonal over the layers (input,
hidden 1, ..., hidden K-1) and is built directly as a sparse map from (rho, T) to its
entries. Solver answers are not bounds (SCS stops slightly infeasible), so after every
solve `certify_multipliers` keeps only the multipliers T, computes in float64 the least
rho making the LMI hold by a Schur complement, and proves -M(rho', T) positive definite at
a slightly larger rho' with a rounding-aware Cholesky test (Rump, BIT 2006). sqrt(rho'),
rounded up, is the certified value.

Two exact transformations keep the SDP small and well scaled: a first layer wider than
the next is replaced by (W_0 W_0^T)^(1/2), which has the same Gram matrix and so the same
constant and the same SDP value; and each layer is divided by its spectral norm, the scale
moving to rho and T by a diagonal congruence. The certificate is always checked on the
original weights.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError
from ..network import Network
from ..registry import method
from . import backends

log = logging.getLogger(__name__)

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2
VARIANTS = ("neuron", "layer")
# First certificate attempt: rho' = rho_min (1 + CERT_REL_MARGIN) + rounding shift; each
# failed Cholesky multiplies the margin by CERT_GROWTH, at most CERT_ATTEMPTS times.
CERT_REL_MARGIN = 1e-10
CERT_GROWTH = 10.0
CERT_ATTEMPTS = 9
# Smallest weight of the strictly feasible ECLipsE point mixed into multipliers that fail
# the certificate (see `repair_multipliers`).
REPAIR_MIN_WEIGHT = 1e-12
# A retry after a failed or loose certificate divides the SCS tolerance by this.
RETRY_EPS_FACTOR = 100.0
# SCS is re-run (warm-started, tighter) at most this many times while the certified value
# exceeds the solver's own by more than REFINE_GAP (relative).
SCS_REFINEMENTS = 1
REFINE_GAP = 2e-6


# ------------------------------------------------------------------------ the instance
@dataclass(frozen=True, eq=False)
class LMIData:
    """One LipSDP instance: weights W_0..W_{K-1} (shape (out, in)) and the slope interval
    [a_k, b_k] of the activation after each of W_0..W_{K-2}."""

    weights: tuple[np.ndarray, ...]
    slopes: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        ws = tuple(np.asarray(W, dtype=np.float64) for W in self.weights)
        object.__setattr__(self, "weights", ws)
        object.__setattr__(self, "slopes", tuple((float(a), float(b)) for a, b in self.slopes))
        if len(self.slopes) != len(ws) - 1:
            raise InputError(f"{len(ws)} weight layers need {len(ws) - 1} slope intervals")

    @property
    def sizes(self) -> list[int]:
        return [self.weights[0].shape[1]] + [W.shape[0] for W in self.weights]

    @property
    def hidden(self) -> list[int]:
        return self.sizes[1:-1]

    @property
    def blocks(self) -> list[int]:
        """Sizes of the LMI's diagonal blocks: the input, then each hidden layer."""
        return self.sizes[:-1]

    @property
    def dim(self) -> int:
        return int(sum(self.blocks))

    @property
    def offsets(self) -> list[int]:
        return [0] + list(np.cumsum(self.blocks))

    def num_vars(self, variant: str) -> int:
        return sum(self.hidden) if variant == "neuron" else len(self.hidden)


def network_data(net: Network) -> LMIData:
    """The LipSDP instance of an MLP (any activation with slope bounds)."""
    weights, _, acts = net.mlp()
    return LMIData(tuple(weights), tuple(a.slopes for a in acts))


def split_data(data: LMIData, size: int) -> tuple[list[LMIData], list[float]]:
    """Sub-networks of `size` weight layers (the last may be shorter) and the Lipschitz
    constant of the activation between consecutive ones."""
    if size < 1:
        raise InputError(f"split must be a positive number of layers, got {size}")
    K = len(data.weights)
    parts, joints = [], []
    for start in range(0, K, size):
        stop = min(start + size, K)
        parts.append(LMIData(data.weights[start:stop], data.slopes[start:stop - 1]))
        if stop < K:
            a, b = data.slopes[stop - 1]
            joints.append(max(abs(a), abs(b)))
    return parts, joints


def compress_first_layer(data: LMIData) -> LMIData:
    """Replace W_0 (n1 x n0, n0 > n1) by (W_0 W_0^T)^(1/2) (n1 x n1): W_0 = R Q with Q
    having orthonormal rows, so the constant and the SDP value are unchanged."""
    W0 = data.weights[0]
    if W0.shape[1] <= W0.shape[0]:
        return data
    evals, evecs = np.linalg.eigh(W0 @ W0.T)
    R = (evecs * np.sqrt(np.clip(evals, 0.0, None))) @ evecs.T
    R = (R + R.T) / 2
    return LMIData((R,) + data.weights[1:], data.slopes)


def layer_scales(data: LMIData) -> np.ndarray:
    """The power of two nearest each weight matrix's spectral norm: dividing by it is exact
    in floating point, so the scaled instance is exactly congruent to the original."""
    norms = np.array([np.linalg.norm(W, 2) if W.size else 0.0 for W in data.weights])
    return 2.0 ** np.round(np.log2(np.where(norms > 0, norms, 1.0)))


def normalise(data: LMIData, scales: np.ndarray) -> LMIData:
    return LMIData(tuple(W / s for W, s in zip(data.weights, scales)), data.slopes)


def unscale(scales: np.ndarray, rho: float, multipliers: list[np.ndarray]
            ) -> tuple[float, list[np.ndarray]]:
    """Map (rho, T) of the normalised instance back: with d_k = 1 / prod_{j>=k} s_j, the
    congruence diag(d_k I) sends T_k to T_k / d_k^2 and rho to rho / d_0^2."""
    tail = np.cumprod(scales[::-1] ** 2)[::-1]  # tail[k] = prod_{j>=k} s_j^2
    return rho * float(tail[0]), [t * float(tail[k + 1]) for k, t in enumerate(multipliers)]


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


def expand(data: LMIData, variant: str, t: np.ndarray) -> list[np.ndarray]:
    """Multipliers per hidden layer (one value per neuron) from the solver's vector."""
    t = np.asarray(t, dtype=np.float64).ravel()
    out, pos = [], 0
    for n in data.hidden:
        if variant == "neuron":
            out.append(t[pos:pos + n].copy())
            pos += n
        else:
            out.append(np.full(n, t[pos]))
            pos += 1
    return out


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
@dataclass(frozen=True)
class Certificate:
    """Outcome of `certify_multipliers`: when `certified`, M(rho, T) < 0 is proven for the
    clipped multipliers, so L_2 <= value = sqrt(rho) (rounded up)."""

    certified: bool
    rho: float
    value: float
    rho_schur: float = float("nan")
    attempts: int = 0
    reason: str = ""


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


def solve_sdp(data: LMIData, variant: str, solver: str, *, eps: float | None = None,
              time_limit: float | None = None, chordal: bool = False) -> Solution:
    """Solve one LipSDP instance with one solver in this process.

    The instance is compressed and normalised first; the multipliers come back in the
    coordinates of `data`. Solver failures are returned in `status`/`message`, except a
    MOSEK licence error, which propagates (the caller falls back to another solver).
    """
    import cvxpy as cp

    start = time.perf_counter()
    small = compress_first_layer(data)
    scales = layer_scales(small)
    prob, rho, t, info = build_problem(normalise(small, scales), variant, chordal=chordal)
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
            with warnings.catch_warnings():  # an inaccurate solve is reported in `status`
                warnings.simplefilter("ignore", UserWarning)
                prob.solve(solver=solver, warm_start=round_ > 0, **opts)
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
        cert = certify_multipliers(data, sol.multipliers)
        if not cert.certified:
            cert = repair_multipliers(data, sol.multipliers) or cert
        sol.certificate = cert
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
    assert best is not None
    best.seconds = time.perf_counter() - start
    return best


def solve_sdp_child(data: LMIData, variant: str, solver: str, eps: float | None,
                    time_limit: float | None, chordal: bool) -> Solution:
    """`solve_sdp` for a child process (module level so that it can be spawned)."""
    return solve_sdp(data, variant, solver, eps=eps, time_limit=time_limit, chordal=chordal)


def run_solver(data: LMIData, variant: str, solver: str, *, eps: float | None,
               time_limit: float | None, chordal: bool) -> Solution:
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
    return solve_sdp(data, variant, solver, eps=eps, time_limit=time_limit, chordal=chordal)


# ------------------------------------------------------------------------ certification
def negated_lmi(data: LMIData, multipliers: list[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """(-M(0, T), a matrix bounding the absolute terms summed in each entry, the longest
    inner product), all in float64 and dense."""
    N, off = data.dim, data.offsets
    X = np.zeros((N, N))
    Xabs = np.zeros((N, N))
    inner = 1
    for k in range(1, len(data.weights)):
        W = data.weights[k - 1]
        aW = np.abs(W)
        a, b = data.slopes[k - 1]
        tk = multipliers[k - 1]
        p, q, r = off[k - 1], off[k], off[k + 1]
        if a * b != 0.0:
            X[p:q, p:q] += 2 * a * b * (W.T * tk) @ W
            Xabs[p:q, p:q] += 2 * abs(a * b) * (aW.T * tk) @ aW
            inner = max(inner, W.shape[0])
        X[p:q, q:r] = -(a + b) * (W.T * tk)
        X[q:r, p:q] = X[p:q, q:r].T
        Xabs[p:q, q:r] = abs(a + b) * (aW.T * tk)
        Xabs[q:r, p:q] = Xabs[p:q, q:r].T
        X[q:r, q:r] += np.diag(2 * tk)
        Xabs[q:r, q:r] += np.diag(2 * tk)
    WL = data.weights[-1]
    s = off[len(data.weights) - 1]
    X[s:, s:] -= WL.T @ WL
    Xabs[s:, s:] += np.abs(WL).T @ np.abs(WL)
    inner = max(inner, WL.shape[0])
    return X, Xabs, inner


def gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u)."""
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


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


def schur_rho(data: LMIData, multipliers: list[np.ndarray], X: np.ndarray) -> float | None:
    """Least rho with -M(rho, T) >= 0, by a float64 Schur complement (None when the hidden
    part of -M is not positive definite). An estimate: `certify_multipliers` proves it."""
    from scipy.linalg import cho_factor, cho_solve, eigh

    n0 = data.sizes[0]
    if len(data.weights) == 1:
        return float(np.linalg.norm(data.weights[0], 2) ** 2)
    C = X[n0:, n0:]
    try:
        factor = cho_factor(C, lower=True)
    except np.linalg.LinAlgError:
        return None
    n1 = data.sizes[1]
    a, b = data.slopes[0]
    t1 = multipliers[0]
    E = np.zeros((C.shape[0], n1))
    E[np.arange(n1), np.arange(n1)] = 1.0
    C11 = cho_solve(factor, E)[:n1]  # block (1, 1) of C^{-1}
    G = (a + b) ** 2 * (t1[:, None] * C11 * t1[None, :]) - np.diag(2 * a * b * t1)
    G = (G + G.T) / 2
    W0 = data.weights[0]
    if W0.shape[1] <= W0.shape[0]:
        S = W0.T @ G @ W0
    else:  # nonzero eigenvalues of W0^T G W0 are those of R G R, R = (W0 W0^T)^(1/2)
        R = compress_first_layer(LMIData((W0,), ())).weights[0]
        S = R @ G @ R
    lam = float(eigh((S + S.T) / 2, eigvals_only=True)[-1])
    return max(lam, 0.0)


def _round_up_sqrt(x: float) -> float:
    return math.nextafter(math.nextafter(math.sqrt(x), math.inf), math.inf)


def certify_multipliers(data: LMIData, multipliers: list[np.ndarray]) -> Certificate:
    """The certified LipSDP value of fixed multipliers T (clipped to >= 0).

    The instance is first scaled layer by layer by powers of two (exact in floating point,
    so the scaled LMI is exactly congruent to the original one and far better conditioned
    for deep nets). Then rho_min comes from the Schur complement, and rho = rho_min
    (1 + margin) + shift is proven feasible by `certify_positive_definite` applied to
    -M(rho, T) with the entry-wise rounding error of forming it, the margin growing tenfold
    after each failure.
    """
    T = [np.maximum(np.nan_to_num(np.asarray(t, np.float64), nan=0.0, posinf=0.0), 0.0)
         for t in multipliers]
    if len(data.weights) > 1 and all(np.any(W) for W in data.weights):
        scales = layer_scales(data)
        scaled = normalise(data, scales)
        if all(np.array_equal(Wn * sk, W)
               for Wn, sk, W in zip(scaled.weights, scales, data.weights)):
            tail = np.cumprod(scales[::-1] ** 2)[::-1]
            cert = _certify(scaled, [t / tail[k + 1] for k, t in enumerate(T)])
            factor = float(np.prod(scales))  # sqrt(tail[0]), a power of two
            return replace(cert, rho=cert.rho * float(tail[0]), value=cert.value * factor,
                           rho_schur=cert.rho_schur * float(tail[0]))
    return _certify(data, T)


def _certify(data: LMIData, T: list[np.ndarray]) -> Certificate:
    if len(data.weights) == 1:
        from ..numerics.spectral import dense_spectral_bounds

        nb = dense_spectral_bounds(data.weights[0])
        up = math.nextafter(nb.upper, math.inf)
        return Certificate(nb.certified, up * up * (1 + 4 * UNIT_ROUNDOFF), up, attempts=1,
                           reason="" if nb.certified else "spectral norm not certified")
    X, Xabs, inner = negated_lmi(data, T)
    rho_min = schur_rho(data, T, X)
    if rho_min is None:
        return Certificate(False, math.inf, math.inf,
                           reason="hidden part of the LMI is not negative definite")
    n0 = data.sizes[0]
    err_base = gamma(inner + 6) * 1.01
    abs_norm = float(np.linalg.norm(Xabs))
    idx = np.arange(n0)
    margin = CERT_REL_MARGIN
    for attempt in range(1, CERT_ATTEMPTS + 1):
        scale = max(rho_min, float(np.abs(np.diag(X)).max()), 1e-300)
        rho = rho_min * (1 + margin) + margin * scale
        Y = X.copy()
        Y[idx, idx] += rho
        error = err_base * (abs_norm + rho * math.sqrt(n0)) + UNIT_ROUNDOFF * rho
        if certify_positive_definite(Y, error):
            return Certificate(True, rho, _round_up_sqrt(rho), rho_min, attempt)
        margin *= CERT_GROWTH
    return Certificate(False, math.inf, math.inf, rho_min, CERT_ATTEMPTS,
                       reason="Cholesky certificate failed at every margin")


def repair_multipliers(data: LMIData, multipliers: list[np.ndarray]) -> Certificate | None:
    """Certify a mixture (1 - w) T + w T_e of failing multipliers T with the ECLipsE-Fast
    point T_e, whose hidden block is strictly negative definite; None if none certifies.

    Solvers stop at the boundary of the cone, where the hidden part H(T) of -M may be
    singular or slightly indefinite. H is affine in T, so the least w making H positive
    definite is given by the smallest generalised eigenvalue mu of (H(T), H(T_e)):
    w* = -mu / (1 - mu). The LMI is jointly convex in (rho, T), so a small w costs at most
    w (rho_e - rho) in value. w starts at a few times w* and doubles until certified.
    """
    from scipy.linalg import eigh

    from ..core.eclipse import eclipse_multipliers

    anchor = eclipse_multipliers(data)
    if anchor is None or len(data.weights) == 1:
        return None
    T = [np.maximum(np.nan_to_num(np.asarray(t, np.float64)), 0.0) for t in multipliers]
    n0 = data.sizes[0]
    H = negated_lmi(data, T)[0][n0:, n0:]
    He = negated_lmi(data, anchor)[0][n0:, n0:]
    try:
        mu = float(eigh(H, He, eigvals_only=True, subset_by_index=[0, 0])[0])
    except (np.linalg.LinAlgError, ValueError):
        return None
    w = REPAIR_MIN_WEIGHT if mu > 0 else min(max(4 * -mu / (1 - mu), REPAIR_MIN_WEIGHT), 0.5)
    while w <= 1.0:
        mixed = [(1 - w) * t + w * e for t, e in zip(T, anchor)]
        cert = certify_multipliers(data, mixed)
        if cert.certified:
            return replace(cert, reason=f"mixed with the ECLipsE-Fast point, weight {w:.3g}")
        w *= 2
    return None


# ------------------------------------------------------------------------ orchestration
@dataclass
class GroupResult:
    value: float
    certified: bool
    status: str  # Bound status
    raw_value: float
    details: dict[str, Any]


def _bound_status(sol: Solution, deadline: float | None) -> str:
    if deadline is not None and time.perf_counter() >= deadline:
        return "timeout"
    if sol.inaccurate:
        return "inaccurate"
    return "ok"


def solve_group(data: LMIData, variant: str, *, solver: str | None, eps: float | None,
                deadline: float | None, chordal: bool) -> GroupResult:
    """Solve and certify one (sub-)network: try the candidate solvers in order until one
    yields certified multipliers (repaired with the ECLipsE-Fast point if need be)."""
    if len(data.weights) == 1:
        cert = certify_multipliers(data, [])
        return GroupResult(cert.value, cert.certified, "ok", cert.value,
                           {"solver": None, "lmi_dim": 0, "note": "single layer: ||W||_2"})
    if any(not np.any(W) for W in data.weights):
        return GroupResult(0.0, True, "ok", 0.0, {"solver": None, "note": "a zero layer"})
    candidates = backends.sdp_candidates(solver)
    tried: list[dict[str, Any]] = []
    fallback: GroupResult | None = None
    for name in candidates:
        remaining = None if deadline is None else max(deadline - time.perf_counter(), 1.0)
        try:
            sol = run_solver(data, variant, name, eps=eps, time_limit=remaining,
                             chordal=chordal)
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
        cert = sol.certificate or certify_multipliers(data, sol.multipliers)
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
        if deadline is not None and time.perf_counter() >= deadline:
            break
    if fallback is not None:
        fallback.details["tried"] = tried
        return fallback
    if not candidates or all(t.get("status") == "unlicensed" for t in tried):
        return GroupResult(math.nan, False, "unavailable", math.nan,
                           {"solver": None, "tried": tried,
                            "message": "no usable SDP solver (install scs or clarabel)"})
    timed_out = deadline is not None and time.perf_counter() >= deadline
    return GroupResult(math.nan, False, "timeout" if timed_out else "error", math.nan,
                       {"solver": None, "tried": tried})


STATUS_ORDER = ("ok", "inaccurate", "timeout", "unavailable", "error")


def lipsdp_bound(net: Network, variant: str, *, solver: str | None = None,
                 time_limit: float | None = None, split: int | None = None,
                 chordal: bool = False, eps: float | None = None) -> Bound:
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
    groups = [solve_group(p, variant, solver=solver, eps=eps, deadline=deadline,
                          chordal=bool(chordal)) for p in parts]
    value, raw = math.prod(joints), math.prod(joints)
    for g in groups:
        value *= g.value
        raw *= g.raw_value
    # each product of non-negative floats rounds by at most u: cover it
    value *= 1 + 2 * (len(groups) + len(joints) + 1) * UNIT_ROUNDOFF
    certified = all(g.certified for g in groups)
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
    if not certified:
        details["warning"] = ("the solver's multipliers could not be certified: the value "
                              "is the solver's, not a proven bound")
    return Bound(name, "upper", value, "2", certified=certified,
                 seconds=time.perf_counter() - start, status=status, details=details)


def _check_call(name: str, norm: str, options: dict[str, Any]) -> None:
    if norm != "2":
        raise InputError(f"{name} bounds the l2 constant only, not norm {norm}")
    if options:
        raise InputError(f"{name} has no option {sorted(options)[0]!r} (options: solver, "
                         "time_limit, split, chordal, eps)")


@method("lipsdp-neuron", kind="upper", norms=("2",), mlp_only=True, domain="never",
        summary="LipSDP-Neuron: SDP with one multiplier per neuron, certified a posteriori")
def lipsdp_neuron(net: Network, *, norm: str = "2", domain: Domain | None = None,
                  solver: str | None = None, time_limit: float | None = None,
                  split: int | None = None, chordal: bool = False, eps: float | None = None,
                  **options: Any) -> Bound:
    """LipSDP-Neuron: the slope-restricted activations' incremental quadratic constraints
    with a diagonal multiplier T (one entry per hidden neuron) in one LMI over all layers.

    Reference: Fazlyab, Robey, Hassani, Morari & Pappas, "Efficient and accurate estimation
    of Lipschitz constants for deep neural networks", NeurIPS 2019.
    Options: solver (force one), time_limit (s), split (sub-networks of that many weight
    layers, product of their bounds), chordal (decomposed LMI, same optimum), eps (solver
    tolerance).
    Guarantee: certified upper bound on the global l2 constant when `certified` is True
    (the solver's multipliers checked a posteriori in float64 with rounding margins).
    """
    _check_call("lipsdp-neuron", norm, options)
    return lipsdp_bound(net, "neuron", solver=solver, time_limit=time_limit, split=split,
                        chordal=chordal, eps=eps)


@method("lipsdp-layer", kind="upper", norms=("2",), mlp_only=True, domain="never",
        summary="LipSDP-Layer: SDP with one multiplier per layer, certified a posteriori")
def lipsdp_layer(net: Network, *, norm: str = "2", domain: Domain | None = None,
                 solver: str | None = None, time_limit: float | None = None,
                 split: int | None = None, chordal: bool = False, eps: float | None = None,
                 **options: Any) -> Bound:
    """LipSDP-Layer: LipSDP with T = lambda_k I on hidden layer k (fewer variables, a
    larger value than LipSDP-Neuron).

    Reference: Fazlyab, Robey, Hassani, Morari & Pappas, NeurIPS 2019.
    Options as lipsdp-neuron.
    Guarantee: certified upper bound on the global l2 constant when `certified` is True.
    """
    _check_call("lipsdp-layer", norm, options)
    return lipsdp_bound(net, "layer", solver=solver, time_limit=time_limit, split=split,
                        chordal=chordal, eps=eps)
