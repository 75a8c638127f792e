"""Spectral norms: dense sigma_max against numpy's SVD, and a large convolution.

Dense: a 5000 x 5000 float32 Gaussian matrix (seed 0). Baselines: numpy's SVD, singular
values only (np.linalg.svd(W, compute_uv=False)) and full (np.linalg.svd(W)). Ours: the
estimate (ARPACK through scipy on the float32 matrix), the certified lower bound (its
vector's float64 Rayleigh quotient) and the certified upper bound (Cholesky certificate of
t^2 I - W^T W in float64).

Convolution ("seed-000"): 64 -> 64 channels, 3x3 kernel, padding 1, 224 x 224 input,
weights torch.manual_seed(0) normal / sqrt(576). Ours: the warm-started power method
(lower) and the circular-convolution DFT bound (certified upper), each in a fresh process
so that its peak memory is its own.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

TITLE = "sigma_max: dense 5000x5000 vs numpy SVD; 64-channel 3x3 conv on 224x224"


def _peak_rss_gb() -> float:
    from ..limits import peak_rss_mb

    return peak_rss_mb() / 1024.0


def dense(n: int) -> dict[str, Any]:
    import torch
    from scipy.sparse.linalg import svds

    from ..numerics.spectral import dense_spectral_bounds

    W = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    t = time.perf_counter()
    ref = float(np.linalg.svd(W, compute_uv=False)[0])
    t_svd = time.perf_counter() - t
    t = time.perf_counter()
    np.linalg.svd(W)
    t_svd_full = time.perf_counter() - t

    t = time.perf_counter()
    _, s, vh = svds(W, k=1, random_state=0)
    t_est = time.perf_counter() - t
    estimate = float(s[0])

    t = time.perf_counter()
    v = vh[0].astype(np.float64)
    W64 = W.astype(np.float64)
    lower = float(np.linalg.norm(W64 @ v) / np.linalg.norm(v)) * (1 - 1e-12)
    t_lower = time.perf_counter() - t

    t = time.perf_counter()
    nb = dense_spectral_bounds(torch.from_numpy(W64))
    t_cert = time.perf_counter() - t
    return {
        "n": n, "numpy_sigma": ref,
        "numpy_svd_values_only_seconds": t_svd, "numpy_svd_full_seconds": t_svd_full,
        "estimate_seconds": t_est, "estimate": estimate,
        "estimate_relative_error_vs_numpy": abs(estimate - ref) / ref,
        "speedup_vs_numpy_svd_values_only": t_svd / t_est,
        "speedup_vs_numpy_svd_full": t_svd_full / t_est,
        "certified_lower": lower, "certified_lower_extra_seconds": t_lower,
        "certified_upper": nb.upper, "certified_upper_seconds": t_cert,
        # both ends are proven, so this bounds the true error of either
        "certified_gap_upper_over_lower": nb.upper / lower - 1.0, "certificate": nb.how,
    }


def _conv_job(size: int, channels: int, part: str) -> dict[str, Any]:
    import torch

    from ..core import linalg
    from ..limits import reset_peak_rss
    from ..network import Conv2d

    reset_peak_rss()  # this child's own peak, not the parent's inherited one
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn((channels, channels, 3, 3), generator=gen, dtype=torch.float64)
    weight /= np.sqrt(9 * channels)
    shape = (channels, size, size)
    t = time.perf_counter()
    if part == "upper":
        value, info = linalg.conv_fourier_upper(weight, shape, (1, 1), (1, 1))
        out = {"value": value, "frequency": info["frequency"]}
    else:
        nb = linalg.conv_spectral_bounds(Conv2d(weight.numpy(), None, 1, 1), shape, tol=1e-6)
        out = {"value": nb.lower, "iterations": nb.details["iterations"]}
    out["seconds"] = time.perf_counter() - t
    out["peak_rss_gb"] = _peak_rss_gb()
    return out


def conv(size: int, channels: int) -> dict[str, Any]:
    from ..limits import call_with_limit

    parts = {}
    for part in ("upper", "lower"):
        res = call_with_limit(_conv_job, size, channels, part, time_limit=1800)
        if res.status != "ok":
            raise RuntimeError(f"conv benchmark {part}: {res.status} {res.message}")
        parts[part] = res.value
    upper, lower = parts["upper"]["value"], parts["lower"]["value"]
    return {
        "input": [channels, size, size], "kernel": [channels, channels, 3, 3],
        "estimate": lower, "estimate_seconds": parts["lower"]["seconds"],
        "estimate_peak_rss_gb": parts["lower"]["peak_rss_gb"],
        "power_iterations": parts["lower"]["iterations"],
        "certified_upper": upper, "certified_upper_seconds": parts["upper"]["seconds"],
        "certified_upper_peak_rss_gb": parts["upper"]["peak_rss_gb"],
        "upper_over_estimate": upper / lower,
        "note": "the estimate's time includes the DFT bound that picks its warm start",
    }


def run(quick: bool = False) -> dict[str, Any]:
    return {"dense": dense(1500 if quick else 5000),
            "conv": conv(56 if quick else 224, 16 if quick else 64)}
