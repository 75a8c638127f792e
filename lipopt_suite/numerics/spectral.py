"""Spectral norms of dense matrices and linear maps: estimated, and certified.

* `power_method` is the AutoGrad-compliant power method of Scaman & Virmaux (NeurIPS 2018,
  Algorithm 1): for any linear function f it iterates v <- grad of 1/2 ||f(v)||^2 = A^T A v,
  so convolutions never become matrices. Batched, warm-startable, stops on a relative
  tolerance, runs on the device of its input. Its value ||A v|| / ||v|| is a lower bound.
* `certify_spectral_upper` proves ||W||_2 <= t for a dense W by a floating-point Cholesky
  factorisation of t^2 I - W^T W shifted by a rounding margin (Rump, BIT 2006): if the
  shifted matrix factors, the exact one is positive definite.
* `dense_spectral_bounds` gives certified lower and upper bounds on ||W||_2 for a dense W:
  the top eigenpair of the smaller Gram matrix (ARPACK when large), the upper bound proven
  by `certify_spectral_upper`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .rounding import UNIT_ROUNDOFF

# Dense matrices whose smaller side is at most this get an exact eigendecomposition of
# their Gram matrix; larger ones ARPACK.
EXACT_SVD_MAX_DIM = 2000


# Relative slack of the first certificate attempt after an exact SVD / a converged estimate;
# each failed attempt multiplies the slack by CERT_GROWTH.
CERT_SLACK_EXACT = 1e-9


CERT_SLACK_ESTIMATE = 1e-6


CERT_GROWTH = 100.0


# A Rayleigh quotient computed in float64 is within a few ulps of its exact value; reporting
# it times (1 - LOWER_MARGIN) keeps the lower bound below the exact quotient.
LOWER_MARGIN = 1e-12


LOWER_MARGIN_F32 = 1e-5


@dataclass(frozen=True)
class PowerResult:
    """Outcome of a power iteration: `sigma` = max_b ||A v_b|| / ||v_b|| (a lower bound)."""

    sigma: float
    vector: torch.Tensor  # (batch, *in_shape), unit norm per sample; best sample first
    iterations: int
    converged: bool
    history: tuple[float, ...] = ()


@dataclass(frozen=True)
class NormBounds:
    """lower <= ||layer||_{p->p} <= upper; `certified` says the upper bound is proven."""

    lower: float
    upper: float
    certified: bool
    how: str
    details: dict[str, Any] = field(default_factory=dict)


def as_tensor(x: Any, *, device: Any = None, dtype: torch.dtype = torch.float64
              ) -> torch.Tensor:
    """A tensor copy of an array or tensor (read-only numpy arrays included)."""
    if torch.is_tensor(x):
        return x.to(device=device, dtype=dtype)
    return torch.from_numpy(np.array(x, dtype=np.float64)).to(device=device, dtype=dtype)


def _gram_apply(fn: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(A^T A v, A v) by one forward and one backward pass: grad of 1/2 ||f(v)||^2."""
    v = v.detach().requires_grad_(True)
    with torch.enable_grad():
        y = fn(v)
        (g,) = torch.autograd.grad(y, v, grad_outputs=y)
    return g.detach(), y.detach()


def power_method(
    fn: Callable[[torch.Tensor], torch.Tensor],
    in_shape: tuple[int, ...],
    *,
    x0: torch.Tensor | None = None,
    batch: int = 1,
    tol: float = 1e-6,
    max_iter: int = 500,
    device: Any = None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> PowerResult:
    """Largest singular value of the *linear* map `fn` (acting on batches (B, *in_shape)).

    Runs `batch` independent iterations (or starts from `x0`, which sets batch and device)
    and stops when the best value changes by less than `tol` relative. Returns the best
    Rayleigh value, a lower bound on sigma_max whatever the convergence.
    """
    if x0 is not None:
        v = x0.detach().reshape((-1, *in_shape))
        dtype, device = v.dtype, v.device
    else:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        v = torch.randn((batch, *in_shape), generator=gen, dtype=dtype).to(device)
    dims = tuple(range(1, v.dim()))
    v = v / torch.linalg.vector_norm(v, dim=dims, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    history: list[float] = []
    sig = torch.zeros(v.shape[0], dtype=dtype, device=v.device)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        g, y = _gram_apply(fn, v)
        sig = y.flatten(1).norm(dim=1)  # ||A v|| with ||v|| = 1
        best = float(sig.max())
        history.append(best)
        gnorm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
        if float(gnorm.max()) == 0.0:
            converged = True
            break
        v = g / gnorm.clamp_min(torch.finfo(dtype).tiny)
        if it > 1 and abs(history[-1] - history[-2]) <= tol * max(history[-1], 1e-300):
            converged = True
            break
    # the last update of v is at least as good as the one measured (A^T A is PSD)
    with torch.no_grad():
        y = fn(v)
    sig_last = y.flatten(1).norm(dim=1)
    if float(sig_last.max()) >= float(sig.max()):
        sig = sig_last
    order = torch.argsort(sig, descending=True)
    return PowerResult(float(sig.max()), v[order].detach(), it, converged, tuple(history))


def top_singular(
    fn: Callable[[torch.Tensor], torch.Tensor],
    in_shape: tuple[int, ...],
    k: int,
    *,
    iters: int = 50,
    tol: float = 1e-6,
    device: Any = None,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k singular triplets of a linear map by subspace iteration through autograd.

    Returns (sigma (k,), right vectors (k, *in_shape), left vectors (k, *out_shape)).
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n = int(np.prod(in_shape))
    k = min(k, n)
    V = torch.randn((k, n), generator=gen, dtype=dtype).to(device)
    V = torch.linalg.qr(V.T)[0].T
    prev = None
    for _ in range(iters):
        G, _ = _gram_apply(fn, V.reshape((k, *in_shape)))
        Q = torch.linalg.qr(G.reshape(k, n).T)[0]  # (n, k)
        # Rayleigh-Ritz on the subspace
        AQ = fn(Q.T.reshape((k, *in_shape))).reshape(k, -1)
        ev, evec = torch.linalg.eigh(AQ @ AQ.T)
        V = (Q @ evec.flip(-1)).T
        vals = ev.flip(-1).clamp_min(0).sqrt()
        if prev is not None and float((vals - prev).abs().max()) <= tol * float(vals[0]):
            break
        prev = vals
    with torch.no_grad():
        U = fn(V.reshape((k, *in_shape)))
    sig = U.flatten(1).norm(dim=1)
    U = U / sig.clamp_min(torch.finfo(dtype).tiny).reshape((-1,) + (1,) * (U.dim() - 1))
    return sig, V.reshape((k, *in_shape)), U


def _estimate_dense(W: torch.Tensor) -> tuple[float, torch.Tensor | None, str]:
    """sigma_max estimate and a right singular vector: SVD when small, ARPACK (CPU) or the
    power method (other devices) when large."""
    m, n = W.shape
    if min(m, n) <= EXACT_SVD_MAX_DIM:
        # the top eigenpair of the smaller Gram matrix: far cheaper than a full SVD
        G = W @ W.T if m < n else W.T @ W
        lam, vecs = torch.linalg.eigh(G)
        v = W.T @ vecs[:, -1] if m < n else vecs[:, -1]
        return math.sqrt(max(float(lam[-1]), 0.0)), v, "svd"
    if W.device.type == "cpu":
        from scipy.sparse.linalg import svds

        arr = W.numpy()
        _, s, vh = svds(arr, k=1, random_state=0)
        return float(s[0]), torch.from_numpy(np.ascontiguousarray(vh[0])), "arpack"
    res = power_method(lambda x: x @ W.T, (n,), batch=4, tol=1e-9, max_iter=3000,
                       dtype=W.dtype, device=W.device)
    return res.sigma, res.vector[0], "power"


def dense_spectral_bounds(W: np.ndarray | torch.Tensor, *, device: Any = None,
                          estimate_dtype: torch.dtype = torch.float64) -> NormBounds:
    """Certified lower and upper bounds on ||W||_2 for a dense matrix.

    The lower bound is ||W v|| / ||v|| in float64 for the estimated top right singular vector
    v; the upper bound is the estimate times (1 + slack), proven by `certify_spectral_upper`.
    """
    W64 = as_tensor(W, device=device)
    if W64.numel() == 0 or float(W64.abs().max()) == 0.0:
        return NormBounds(0.0, 0.0, True, "zero")
    # scale by a power of two (exact) so that the Gram matrix neither underflows nor overflows
    k = math.frexp(float(W64.abs().max()))[1]
    if abs(k) > 64:
        nb = dense_spectral_bounds(W64 * 2.0**-k, device=device, estimate_dtype=estimate_dtype)
        upper = math.ldexp(nb.upper, k)
        return NormBounds(math.ldexp(nb.lower, k), upper if upper > 0 else math.ulp(0.0),
                          nb.certified, nb.how, {**nb.details, "scaled_by_2^": -k})
    sigma, v, how = _estimate_dense(W64.to(estimate_dtype))
    lower = 0.0
    if v is not None:
        v64 = v.to(device=W64.device, dtype=torch.float64)
        lower = float((W64 @ v64).norm() / v64.norm()) * (1 - LOWER_MARGIN)
    slack = CERT_SLACK_EXACT if how == "svd" else CERT_SLACK_ESTIMATE
    base = max(sigma, lower)
    for attempt in range(6):
        t = base * (1 + slack)
        if certify_spectral_upper(W64, t):
            return NormBounds(lower, t, True, f"{how}+cholesky",
                              {"estimate": sigma, "slack": slack, "attempts": attempt + 1})
        slack *= CERT_GROWTH
    fro = float(W64.norm()) * (1 + 4 * W64.numel() * UNIT_ROUNDOFF)
    return NormBounds(lower, fro, True, "frobenius", {"estimate": sigma})


def certify_spectral_upper(W: torch.Tensor | np.ndarray, t: float) -> bool:
    """True only if ||W||_2 <= t is proven: Cholesky of (t^2 - c) I - fl(W^T W) succeeds, with
    c covering the rounding of the Gram product and of the factorisation (Rump 2006)."""
    Wt = as_tensor(W)
    if Wt.numel() == 0:
        return t >= 0
    m, n = Wt.shape
    G = Wt @ Wt.T if m < n else Wt.T @ Wt
    r = G.shape[0]
    inner = n if m < n else m  # length of the dot products forming G
    fro2 = float((Wt * Wt).sum())
    u = UNIT_ROUNDOFF
    gamma_inner = inner * u / (1 - inner * u)
    trace_a = r * t * t - float(torch.diagonal(G).sum())
    shift = 2.0 * gamma_inner * fro2 * 1.01 + 2.0 * (r + 1) * u * max(trace_a, 0.0) * 1.01
    shift += 1e-300  # underflow guard
    A = -G
    A.diagonal().add_(t * t - shift)
    _, info = torch.linalg.cholesky_ex(A)
    return int(info) == 0
