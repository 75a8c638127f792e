"""The LipSDP matrix inequality and its a-posteriori certificate, in float64.

For an MLP f(x) = W_{K-1} phi(... phi(W_0 x)) whose activations have slopes in [a_k, b_k],
LipSDP (Fazlyab et al., NeurIPS 2019) asks for rho and diagonal multipliers T_k >= 0 (one
per hidden layer k = 1..K-1) with

    M(rho, T) = [A; B]^T [[-2 a b T, (a + b) T], [(a + b) T, -2 T]] [A; B]
                + diag(-rho I, 0, ..., 0, W_{K-1}^T W_{K-1})  <=  0,

and then L_2(f) <= sqrt(rho). The matrix is block tridiagonal over the layers (input,
hidden 1, ..., hidden K-1). This module holds the instance (`LMIData`), exact
transformations of it (first-layer compression, power-of-two layer scaling), the
certificate of fixed multipliers (`certify_multipliers`: the least rho for them by a
Schur complement, proven by a rounding-aware Cholesky test, Rump, BIT 2006), the repair of
multipliers that fail it, and the closed-form ECLipsE-Fast point (Xu & Sivaranjani,
NeurIPS 2024) that the repair mixes in. Solvers and closed forms only propose multipliers;
the value reported as certified always comes from `certify_multipliers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError
from ..network import Network
from .psd import certify_positive_definite
from .rounding import UNIT_ROUNDOFF, gamma

# First certificate attempt: rho' = rho_min (1 + CERT_REL_MARGIN) + rounding shift; each
# failed Cholesky multiplies the margin by CERT_GROWTH, at most CERT_ATTEMPTS times.
CERT_REL_MARGIN = 1e-10
CERT_GROWTH = 10.0
CERT_ATTEMPTS = 9
# Smallest weight of the strictly feasible ECLipsE point mixed into multipliers that fail
# the certificate (see `repair_multipliers`).
REPAIR_MIN_WEIGHT = 1e-12
# ECLipsE-Fast: the last layer's multiplier scale is raised by this (relative) so that the
# hidden part of the LMI is strictly negative definite, as the certificate needs.
FINAL_SLACK = 1e-7
# Layer scales only need to be powers of two near the spectral norm (any power of two is
# exact); matrices whose smaller side exceeds this get a power-iteration estimate instead
# of an SVD.
SCALE_SVD_MAX_DIM = 256
SCALE_POWER_STEPS = 30


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
        return [0] + [int(v) for v in np.cumsum(self.blocks)]

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


def _norm_estimate(W: np.ndarray) -> float:
    if min(W.shape) <= SCALE_SVD_MAX_DIM:
        return float(np.linalg.norm(W, 2))
    v = np.random.default_rng(0).standard_normal(W.shape[1])
    sigma = 0.0
    for _ in range(SCALE_POWER_STEPS):
        v = W.T @ (W @ v)
        nv = float(np.linalg.norm(v))
        if nv == 0.0:
            return 0.0
        v = v / nv
        sigma = float(np.linalg.norm(W @ v))
    return sigma


def layer_scales(data: LMIData) -> np.ndarray:
    """The power of two nearest each weight matrix's spectral norm (an estimate for large
    ones): dividing by it is exact in floating point, so the scaled instance is exactly
    congruent to the original."""
    norms = np.array([_norm_estimate(W) if W.size else 0.0 for W in data.weights])
    return 2.0 ** np.round(np.log2(np.where(norms > 0, norms, 1.0)))


def normalise(data: LMIData, scales: np.ndarray) -> LMIData:
    return LMIData(tuple(W / s for W, s in zip(data.weights, scales)), data.slopes)


def unscale(scales: np.ndarray, rho: float, multipliers: list[np.ndarray]
            ) -> tuple[float, list[np.ndarray]]:
    """Map (rho, T) of the normalised instance back: with d_k = 1 / prod_{j>=k} s_j, the
    congruence diag(d_k I) sends T_k to T_k / d_k^2 and rho to rho / d_0^2."""
    tail = np.cumprod(scales[::-1] ** 2)[::-1]  # tail[k] = prod_{j>=k} s_j^2
    return rho * float(tail[0]), [t * float(tail[k + 1]) for k, t in enumerate(multipliers)]


def expand(data: LMIData, variant: str, t: np.ndarray) -> list[np.ndarray]:
    """Multipliers per hidden layer (one value per neuron) from a solver's vector (one entry
    per neuron for "neuron", one per hidden layer for "layer")."""
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


# ------------------------------------------------------------------------ ECLipsE-Fast
def eclipse_point(data: LMIData) -> tuple[list[np.ndarray], float] | None:
    """LipSDP-Layer multipliers (one value per neuron, constant over each hidden layer) and
    the recursion's rho from ECLipsE-Fast, or None when the recursion breaks down (a zero
    layer, or a Schur complement that is not positive definite).

    With rho = 1 and X_0 = I, for each hidden layer k with slopes [a, b]:
    G_k = W X_{k-1}^{-1} W^T, lambda_k = 1 / ((a+b)^2 lambda_max(G_k)) (the maximiser of
    lambda_min(X_k)'s lower bound), X_k = 2 lambda_k I - (a+b)^2 lambda_k^2 G_k, the Schur
    complement of -M after eliminating the earlier blocks. The last layer needs
    c X_{K-1} >= W^T W, i.e. c = lambda_max(W X_{K-1}^{-1} W^T), and scaling (rho, T) by c
    gives a feasible point of value L^2 <= c.
    """
    from scipy.linalg import cho_factor, cho_solve, eigh

    weights, slopes = data.weights, data.slopes
    X = np.eye(weights[0].shape[1])
    lams = []
    for k in range(1, len(weights)):
        W = weights[k - 1]
        a, b = slopes[k - 1]
        try:
            G = W @ cho_solve(cho_factor(X), W.T)
        except np.linalg.LinAlgError:
            return None
        G = (G + G.T) / 2
        sigma = float(eigh(G, eigvals_only=True)[-1])
        if not sigma > 0:
            return None
        s2 = (a + b) ** 2
        lam = 1.0 / (s2 * sigma) if s2 > 0 else 1.0
        X = 2 * lam * np.eye(W.shape[0]) - s2 * lam * lam * G
        X = (X + X.T) / 2
        lams.append(lam)
    WL = weights[-1]
    try:
        G = WL @ cho_solve(cho_factor(X), WL.T)
    except np.linalg.LinAlgError:
        return None
    c = float(eigh((G + G.T) / 2, eigvals_only=True)[-1])
    if not (c > 0 and math.isfinite(c)):
        return None
    scale = c * (1 + FINAL_SLACK)
    return [np.full(n, scale * lam) for n, lam in zip(data.hidden, lams)], c


def eclipse_multipliers(data: LMIData) -> list[np.ndarray] | None:
    """The multipliers of `eclipse_point`, or None."""
    point = eclipse_point(data)
    return None if point is None else point[0]


# ------------------------------------------------------------------------ the matrix


def hidden_lmi(data: LMIData, multipliers: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, int]:
    """The hidden part of -M(0, T) (blocks 1..K-1), a matrix bounding the absolute terms
    summed in each of its entries, and the longest inner product; float64, dense."""
    n0, N, off = data.sizes[0], data.dim, data.offsets
    Nh = N - n0
    X = np.zeros((Nh, Nh))
    Xabs = np.zeros((Nh, Nh))
    inner = 1
    for k in range(1, len(data.weights)):
        W = data.weights[k - 1]
        a, b = data.slopes[k - 1]
        tk = multipliers[k - 1]
        p, q, r = off[k - 1] - n0, off[k] - n0, off[k + 1] - n0
        if k >= 2:
            aW = np.abs(W)
            if a * b != 0.0:
                X[p:q, p:q] += 2 * a * b * (W.T * tk) @ W
                Xabs[p:q, p:q] += 2 * abs(a * b) * (aW.T * tk) @ aW
                inner = max(inner, W.shape[0])
            X[p:q, q:r] = -(a + b) * (W.T * tk)
            X[q:r, p:q] = X[p:q, q:r].T
            Xabs[p:q, q:r] = abs(a + b) * (aW.T * tk)
            Xabs[q:r, p:q] = Xabs[p:q, q:r].T
        idx = np.arange(q, r)
        X[idx, idx] += 2 * tk
        Xabs[idx, idx] += 2 * tk
    WL = data.weights[-1]
    s = off[len(data.weights) - 1] - n0
    X[s:, s:] -= WL.T @ WL
    Xabs[s:, s:] += np.abs(WL).T @ np.abs(WL)
    inner = max(inner, WL.shape[0])
    return X, Xabs, inner


def negated_lmi(data: LMIData, multipliers: list[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """(-M(0, T), a matrix bounding the absolute terms summed in each entry, the longest
    inner product), all in float64 and dense."""
    n0, n1, N = data.sizes[0], data.sizes[1], data.dim
    X = np.zeros((N, N))
    Xabs = np.zeros((N, N))
    if len(data.weights) == 1:
        return X, Xabs, 1
    H, Habs, inner = hidden_lmi(data, multipliers)
    X[n0:, n0:] = H
    Xabs[n0:, n0:] = Habs
    W = data.weights[0]
    aW = np.abs(W)
    a, b = data.slopes[0]
    t1 = multipliers[0]
    if a * b != 0.0:
        X[:n0, :n0] = 2 * a * b * (W.T * t1) @ W
        Xabs[:n0, :n0] = 2 * abs(a * b) * (aW.T * t1) @ aW
        inner = max(inner, W.shape[0])
    X[:n0, n0:n0 + n1] = -(a + b) * (W.T * t1)
    X[n0:n0 + n1, :n0] = X[:n0, n0:n0 + n1].T
    Xabs[:n0, n0:n0 + n1] = abs(a + b) * (aW.T * t1)
    Xabs[n0:n0 + n1, :n0] = Xabs[:n0, n0:n0 + n1].T
    return X, Xabs, inner


# ------------------------------------------------------------------------ certificates


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


def _round_up_sqrt(x: float) -> float:
    return math.nextafter(math.nextafter(math.sqrt(x), math.inf), math.inf)


def schur_rho(data: LMIData, multipliers: list[np.ndarray], X: np.ndarray) -> float | None:
    """Least rho with -M(rho, T) >= 0, by a float64 Schur complement of X = -M(0, T) (None
    when the hidden part of -M is not positive definite). An estimate:
    `certify_multipliers` proves it."""
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


def clip_multipliers(multipliers: list[np.ndarray]) -> list[np.ndarray]:
    """Multipliers as float64, NaN and infinities set to 0, negative entries clipped to 0."""
    return [np.maximum(np.nan_to_num(np.asarray(t, np.float64), nan=0.0, posinf=0.0,
                                     neginf=0.0), 0.0) for t in multipliers]


def certify_multipliers(data: LMIData, multipliers: list[np.ndarray]) -> Certificate:
    """The certified LipSDP value of fixed multipliers T (clipped to >= 0).

    The instance is first scaled layer by layer by powers of two (exact in floating point,
    so the scaled LMI is exactly congruent to the original one and far better conditioned
    for deep nets). Then rho_min comes from a Schur complement, and rho = rho_min
    (1 + margin) + shift is proven feasible by `certify_positive_definite`, the margin
    growing tenfold after each failure. When the first activation has a b = 0 (relu, tanh,
    sigmoid) the input block of -M(rho, T) is exactly rho I, and -M(rho, T) > 0 is proven
    through its Schur complement rho H - B B^T over the hidden neurons only (an exact
    equivalence), so a wide input costs nothing; otherwise the whole -M is factored.
    """
    T = clip_multipliers(multipliers)
    if all(np.any(W) for W in data.weights):
        scales = layer_scales(data)
        scaled = normalise(data, scales)
        if all(np.array_equal(Wn * sk, W)
               for Wn, sk, W in zip(scaled.weights, scales, data.weights)):
            with np.errstate(over="ignore"):  # rho itself may overflow; the value cannot
                tail = np.cumprod(scales[::-1] ** 2)[::-1]
            cert = _certify(scaled, [t / tail[k + 1] for k, t in enumerate(T)])
            factor = float(np.prod(scales))  # sqrt(tail[0]), a power of two
            with np.errstate(over="ignore"):
                return replace(cert, rho=cert.rho * float(tail[0]),
                               value=cert.value * factor,
                               rho_schur=cert.rho_schur * float(tail[0]))
    return _certify(data, T)


def _certify(data: LMIData, T: list[np.ndarray]) -> Certificate:
    if len(data.weights) == 1:
        return _certify_single(data.weights[0])
    a, b = data.slopes[0]
    if a * b == 0.0:
        return _certify_reduced(data, T)
    return _certify_dense(data, T)


def _certify_single(W: np.ndarray) -> Certificate:
    """||W||_2^2 < rho proven by a Cholesky certificate of rho I - G, G the smaller Gram
    matrix of W formed in float64 (entry errors at most gamma_n (|W| |W|^T)_ij)."""
    from scipy.linalg import eigh

    Wd = W if W.shape[0] <= W.shape[1] else W.T
    G = Wd @ Wd.T
    aW = np.abs(Wd)
    Gabs = aW @ aW.T
    n = G.shape[0]
    if not np.all(np.isfinite(G)):
        return Certificate(False, math.inf, math.inf, reason="spectral norm not finite")
    sigma2 = max(float(eigh((G + G.T) / 2, eigvals_only=True)[-1]), 0.0)
    g_norm = float(np.linalg.norm(Gabs))
    err = gamma(Wd.shape[1] + 2) * g_norm * 1.01
    scale = max(sigma2, float(np.diag(Gabs).max()), 1e-300)
    margin = CERT_REL_MARGIN
    idx = np.arange(n)
    for attempt in range(1, CERT_ATTEMPTS + 1):
        rho = sigma2 * (1 + margin) + margin * scale
        Y = -G
        Y[idx, idx] += rho
        error = err + 2 * UNIT_ROUNDOFF * (rho * math.sqrt(n) + g_norm)
        if certify_positive_definite(Y, error):
            return Certificate(True, rho, _round_up_sqrt(rho), sigma2, attempt)
        margin *= CERT_GROWTH
    return Certificate(False, math.inf, math.inf, sigma2, CERT_ATTEMPTS,
                       reason="spectral norm not certified")


def _certify_reduced(data: LMIData, T: list[np.ndarray]) -> Certificate:
    """First activation with a b = 0: -M(rho, T) = [[rho I, B^T], [B, H]] with
    B = -(a+b) T_1 W_0, which is positive definite iff rho > 0 and rho H - B B^T is."""
    from scipy.linalg import cho_factor, cho_solve, eigh

    H, Habs, inner = hidden_lmi(data, T)
    n0, n1 = data.sizes[0], data.sizes[1]
    W0 = data.weights[0]
    a, b = data.slopes[0]
    s2 = (a + b) ** 2
    t1 = T[0]
    aW0 = np.abs(W0)
    D = s2 * (t1[:, None] * (W0 @ W0.T) * t1[None, :])  # B B^T, block (1, 1) only
    Dabs = s2 * (t1[:, None] * (aW0 @ aW0.T) * t1[None, :])
    try:
        factor = cho_factor(H, lower=True)
    except np.linalg.LinAlgError:
        return Certificate(False, math.inf, math.inf,
                           reason="hidden part of the LMI is not negative definite")
    E = np.zeros((H.shape[0], n1))
    E[np.arange(n1), np.arange(n1)] = 1.0
    C11 = cho_solve(factor, E)[:n1]  # block (1, 1) of H^{-1}
    C11 = (C11 + C11.T) / 2
    # rho_min = lambda_max(B^T H^{-1} B) = lambda_max(F^T D F) with C11 = F F^T
    try:
        F = np.linalg.cholesky(C11)
        S = F.T @ D @ F
        rho_min = max(float(eigh((S + S.T) / 2, eigvals_only=True)[-1]), 0.0)
    except np.linalg.LinAlgError:
        return Certificate(False, math.inf, math.inf,
                           reason="hidden part of the LMI is not negative definite")
    h_norm = float(np.linalg.norm(Habs))
    d_norm = float(np.linalg.norm(Dabs))
    # entry errors: H as negated_lmi's; D = fl(W0 W0^T) times four roundings
    err_h = (gamma(inner + 6) + 3 * UNIT_ROUNDOFF) * 1.01
    err_d = (gamma(n0 + 6) + 3 * UNIT_ROUNDOFF) * 1.01
    idx = np.arange(n1)
    margin = CERT_REL_MARGIN
    scale = max(rho_min, float(np.abs(np.diag(H)).max()), 1e-300)
    for attempt in range(1, CERT_ATTEMPTS + 1):
        rho = rho_min * (1 + margin) + margin * scale
        Z = rho * H
        Z[np.ix_(idx, idx)] -= D
        error = err_h * rho * h_norm + err_d * d_norm
        if rho > 0 and certify_positive_definite(Z, error):
            return Certificate(True, rho, _round_up_sqrt(rho), rho_min, attempt)
        margin *= CERT_GROWTH
    return Certificate(False, math.inf, math.inf, rho_min, CERT_ATTEMPTS,
                       reason="Cholesky certificate failed at every margin")


def _certify_dense(data: LMIData, T: list[np.ndarray]) -> Certificate:
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
    if len(data.weights) == 1:
        return None
    anchor = eclipse_multipliers(data)
    if anchor is None:
        return None
    T = clip_multipliers(multipliers)
    return mix_until_certified(T, anchor, hidden_lmi(data, T)[0], hidden_lmi(data, anchor)[0],
                               lambda mixed: certify_multipliers(data, mixed),
                               "the ECLipsE-Fast point")


def mix_until_certified(T: list[np.ndarray], anchor: list[np.ndarray], H: np.ndarray,
                        H_anchor: np.ndarray, certify: Callable[[list[np.ndarray]], Certificate],
                        label: str, *, include_anchor: bool = True) -> Certificate | None:
    """The first certified mixture (1 - w) T + w anchor, w from a few times the least weight
    making the hidden block H(T) (positive definite at the anchor, H_anchor) definite,
    doubled up to 1 (the anchor itself, unless `include_anchor` is False); None if none.
    H is affine in T, so that weight is -mu / (1 - mu) for the smallest generalised
    eigenvalue mu of (H, H_anchor)."""
    from scipy.linalg import eigh

    try:
        mu = float(eigh(H, H_anchor, eigvals_only=True, subset_by_index=[0, 0])[0])
    except (np.linalg.LinAlgError, ValueError):
        return None
    w = REPAIR_MIN_WEIGHT if mu > 0 else min(max(4 * -mu / (1 - mu), REPAIR_MIN_WEIGHT), 0.5)
    while w < 1.0 or (include_anchor and w == 1.0):
        cert = certify([(1 - w) * t + w * e for t, e in zip(T, anchor)])
        if cert.certified:
            return replace(cert, reason=f"mixed with {label}, weight {w:.3g}")
        w *= 2
    return None
