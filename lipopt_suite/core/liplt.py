"""LipLT: Lipschitz bounds by loop transformation of the activations."""

from __future__ import annotations

import math

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError
from ..network import Network
from ..numerics.rounding import UNIT_ROUNDOFF
from ..numerics.spectral import dense_spectral_bounds
from ..registry import method


def _norm_upper(P: np.ndarray, Pabs: np.ndarray, inner: int) -> tuple[float, bool]:
    """Certified upper bound on ||exact product||_2 from its float64 value P: the two differ
    by at most gamma_s |A_1| ... |A_r| = gamma_s Pabs entry-wise, s the sum of the inner
    dimensions (Higham, Accuracy and Stability of Numerical Algorithms, section 3.5)."""
    nb = dense_spectral_bounds(P)
    if inner == 0:
        return nb.upper, nb.certified
    g = inner * UNIT_ROUNDOFF / (1 - inner * UNIT_ROUNDOFF)
    return nb.upper + g * float(np.linalg.norm(Pabs)) * 1.01, nb.certified


def liplt_value(weights: list[np.ndarray], slopes: list[tuple[float, float]]
                ) -> tuple[float, bool, list[float]]:
    """The LipLT recursion: (bound, certified, per-layer bounds L_1..L_K).

    With phi_k(y) = m_k y + psi_k(y), m_k = (a_k + b_k) / 2 and psi_k Lipschitz with
    r_k = (b_k - a_k) / 2, the pre-activation y_{k+1} = W_k phi_k(y_k) unrolls into
    (m_k ... m_1) W_k ... W_0 x + sum_j (m_k ... m_{j+1}) W_k ... W_j psi_j(y_j), so
    L_{k+1} <= |m_k ... m_1| ||W_k ... W_0|| + sum_j |m_k ... m_{j+1}| ||W_k ... W_j|| r_j L_j.
    """
    K = len(weights)
    m = [abs(a + b) / 2 for a, b in slopes]
    r = [(b - a) / 2 for a, b in slopes]
    certified = True
    L: list[float] = []
    ops = 0
    for k in range(K):
        total = 0.0
        P, Pabs, inner = weights[k], np.abs(weights[k]), 0
        for j in range(k, -1, -1):  # P = W_k ... W_j
            if j < k:
                inner += weights[j].shape[0]
                P, Pabs = P @ weights[j], Pabs @ np.abs(weights[j])
            norm, ok = _norm_upper(P, Pabs, inner)
            certified &= ok
            coef = math.prod(m[j:k])  # slopes[i] belongs to the activation after W_i
            total += coef * norm * (1.0 if j == 0 else r[j - 1] * L[j - 1])
            ops += (k - j) + 4
        L.append(total)
    # every operation above is on non-negative numbers: relative error at most u each
    value = L[-1] * (1 + 2 * (ops + 2) * UNIT_ROUNDOFF)
    return value, certified, L


@method("liplt", kind="upper", cost="cheap", norms=("2",), mlp_only=True, domain="never",
        summary="LipLT: loop-transformed recursion over products of consecutive layers")
def liplt(net: Network, *, norm: str = "2", domain: Domain | None = None) -> Bound:
    """LipLT: write each activation as its mean slope times the identity plus a residual of
    Lipschitz constant (b - a)/2, unroll the network, and bound each term by the spectral
    norms of products of consecutive layers (exact for linear parts, unlike AutoLip).

    Reference: Fazlyab, Entesari, Roy & Chellappa, "Certified robustness via dynamic margin
    maximization and improved Lipschitz regularization", NeurIPS 2023 (LipLT).
    Every norm is a certified upper bound (SVD + Cholesky certificate) plus the rounding
    error of the float64 product; no value exceeds the product of the layers' norms.
    Guarantee: certified upper bound on the global l2 constant.
    """
    if norm != "2":
        raise InputError(f"liplt bounds the l2 constant only, not norm {norm}")
    weights, _, acts = net.mlp()
    value, certified, layers = liplt_value(list(weights), [a.slopes for a in acts])
    return Bound("liplt", "upper", value, norm, certified=certified,
                 details={"layer_bounds": layers})
