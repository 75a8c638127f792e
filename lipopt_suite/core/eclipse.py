"""ECLipsE-Fast: a closed-form feasible point of LipSDP-Layer, layer by layer."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError, UnsupportedError
from ..network import Network
from ..registry import method

# The last layer's multiplier scale is raised by this (relative) so that the hidden part
# of the LMI is strictly negative definite, as the certificate needs.
FINAL_SLACK = 1e-7


def eclipse_multipliers(data: Any) -> list[np.ndarray] | None:
    """The multipliers of `eclipse_point`, or None."""
    point = eclipse_point(data)
    return None if point is None else point[0]


def eclipse_point(data: Any) -> tuple[list[np.ndarray], float] | None:
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


@method("eclipse-fast", kind="upper", norms=("2",), mlp_only=True, domain="never",
        summary="ECLipsE-Fast: closed-form feasible point of LipSDP-Layer, certified")
def eclipse_fast(net: Network, *, norm: str = "2", domain: Domain | None = None,
                 **options: Any) -> Bound:
    """ECLipsE-Fast: eliminate the LipSDP-Layer LMI block by block (Schur complements) and
    pick each layer's multiplier in closed form; no SDP solver.

    Reference: Xu & Sivaranjani, "ECLipsE: Efficient compositional Lipschitz constant
    estimation for deep neural networks", NeurIPS 2024 (ECLipsE-Fast).
    The multipliers are certified like a solver's (solvers/lipsdp.py,
    `certify_multipliers`): the least rho for them by a Schur complement, proven by a
    rounding-aware Cholesky test. Its value is at least LipSDP-Layer's optimum and at most
    the product of the layers' spectral norms.
    Guarantee: certified upper bound on the global l2 constant when `certified` is True.
    """
    from ..solvers.lipsdp import certify_multipliers, network_data

    if norm != "2":
        raise InputError(f"eclipse-fast bounds the l2 constant only, not norm {norm}")
    if options:
        raise InputError(f"eclipse-fast has no option {sorted(options)[0]!r}")
    data = network_data(net)
    if any(a * b < 0 for a, b in data.slopes):
        # the recursion drops the term 2 a b lambda_{k+1} W_k^T W_k, safe only when a b >= 0
        raise UnsupportedError("eclipse-fast needs activation slopes [a, b] with a b >= 0 "
                               "(a leaky relu with a negative slope is not supported)")
    if any(not np.any(W) for W in data.weights):
        return Bound("eclipse-fast", "upper", 0.0, norm, certified=True,
                     details={"note": "a zero layer: the network is constant"})
    if len(data.weights) == 1:
        cert = certify_multipliers(data, [])
        return Bound("eclipse-fast", "upper", cert.value, norm, certified=cert.certified,
                     details={"note": "single layer: ||W||_2"})
    point = eclipse_point(data)
    if point is None:
        return Bound("eclipse-fast", "upper", math.nan, norm, status="error",
                     details={"message": "the ECLipsE-Fast recursion broke down"})
    T, c = point
    cert = certify_multipliers(data, T)
    lams = [float(t[0]) for t in T]
    details = {"multipliers": lams, "rho": cert.rho, "recursion_value": math.sqrt(c),
               "certificate_attempts": cert.attempts}
    if not cert.certified:
        details["certificate"] = cert.reason
        details["warning"] = "not certified: the value is the recursion's, not a proven bound"
        return Bound("eclipse-fast", "upper", math.sqrt(c), norm, certified=False,
                     status="inaccurate", details=details)
    return Bound("eclipse-fast", "upper", cert.value, norm, certified=True, details=details)
