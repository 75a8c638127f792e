"""SeqLip's exact inner maximum over activation patterns.

Baseline: the brute force of the reference implementation's kind, a Python loop over all
2^n patterns taking numpy's spectral norm of Sigma V^T diag(s) U Sigma, measured at width 16
in the same run (and extrapolated to width 20 by the 2^4 factor; the reference is quoted
at about 140 s there). Ours: core/patterns.max_pattern_norm (batched enumeration with a
certified pruning screen) at widths 16 and 20, and a whole SeqLip on a 2-20-20-20-2 MLP.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np

TITLE = "SeqLip exact inner max at width 20 vs brute force"


def _factors(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    W1, W2 = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    U1, S1, _ = np.linalg.svd(W1)
    _, S2, V2t = np.linalg.svd(W2)
    return S2[:, None] * V2t, U1 * S1[None, :]


def brute_force(A: np.ndarray, B: np.ndarray) -> float:
    best = 0.0
    for s in itertools.product((0.0, 1.0), repeat=A.shape[1]):
        best = max(best, np.linalg.norm((A * np.array(s)) @ B, 2))
    return best


def run(quick: bool = False) -> dict[str, Any]:
    from ..core.patterns import max_pattern_norm
    from ..harness.nets import random_mlp
    from ..registry import estimate

    base_n = 12 if quick else 16
    A, B = _factors(base_n)
    t = time.perf_counter()
    ref = brute_force(A, B)
    t_brute = time.perf_counter() - t
    t = time.perf_counter()
    ours = max_pattern_norm(A, B)
    t_ours_base = time.perf_counter() - t
    out: dict[str, Any] = {
        "width_baseline": base_n, "brute_force_seconds": t_brute,
        "exact_seconds_at_baseline_width": t_ours_base,
        "speedup_at_baseline_width": t_brute / t_ours_base,
        "agrees_with_brute_force": bool(ours.lower <= ref * (1 + 1e-12)
                                        <= ours.upper * (1 + 1e-12)),
    }
    n = 16 if quick else 20
    A, B = _factors(n, seed=1)
    t = time.perf_counter()
    res = max_pattern_norm(A, B)
    out.update({"width": n, "exact_seconds": time.perf_counter() - t, "value": res.upper,
                "exact_evaluations": res.evaluated,
                "brute_force_seconds_extrapolated": t_brute * 2 ** (n - base_n)})
    net = random_mlp([2, n, n, n, 2], seed=0)
    t = time.perf_counter()
    b = estimate(net, "seqlip")
    out["seqlip_mlp"] = {"sizes": [2, n, n, n, 2], "seconds": time.perf_counter() - t,
                         "value": b.value, "autolip": estimate(net, "autolip").value}
    return out
