"""ECLipsE-Fast: a closed-form feasible point of LipSDP-Layer, layer by layer.

The recursion (`eclipse_point`) and the certificate live in numerics/lmi.py, shared with
LipSDP, whose solver answers are repaired with this point.
"""

from __future__ import annotations

import math

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError, UnsupportedError
from ..network import Network
from ..numerics.blas import single_threaded
from ..numerics.lmi import certify_multipliers, eclipse_point, network_data
from ..registry import method

__all__ = ["eclipse_fast", "eclipse_point"]

@method("eclipse-fast", kind="upper", cost="cheap", norms=("2",), mlp_only=True, domain="never",
        summary="ECLipsE-Fast: closed-form feasible point of LipSDP-Layer, certified")
def eclipse_fast(net: Network, *, norm: str = "2", domain: Domain | None = None) -> Bound:
    """ECLipsE-Fast: eliminate the LipSDP-Layer LMI block by block (Schur complements) and
    pick each layer's multiplier in closed form; no SDP solver.

    Reference: Xu & Sivaranjani, "ECLipsE: Efficient compositional Lipschitz constant
    estimation for deep neural networks", NeurIPS 2024 (ECLipsE-Fast).
    The multipliers are certified like a solver's (numerics/lmi.py,
    `certify_multipliers`): the least rho for them by a Schur complement, proven by a
    rounding-aware Cholesky test. Its value is at least LipSDP-Layer's optimum and at most
    the product of the layers' spectral norms.
    Guarantee: certified upper bound on the global l2 constant when `certified` is True.
    """
    if norm != "2":
        raise InputError(f"eclipse-fast bounds the l2 constant only, not norm {norm}")
    data = network_data(net)
    if any(a * b < 0 for a, b in data.slopes):
        # the recursion drops the term 2 a b lambda_{k+1} W_k^T W_k, safe only when a b >= 0
        raise UnsupportedError("eclipse-fast needs activation slopes [a, b] with a b >= 0 "
                               "(a leaky relu with a negative slope is not supported)")
    if any(not np.any(W) for W in data.weights):
        return Bound("eclipse-fast", "upper", 0.0, norm, certified=True,
                     details={"note": "a zero layer: the network is constant"})
    with single_threaded():  # small dense factorisations: see numerics/blas.py
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
