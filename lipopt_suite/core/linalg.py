"""Operator norms of linear layers: exact, estimated, and certified.

* `power_method` is the AutoGrad-compliant power method of Scaman & Virmaux (NeurIPS 2018,
  Algorithm 1): for any linear function f it iterates v <- grad of 1/2 ||f(v)||^2 = A^T A v,
  so convolutions never become matrices. Batched, warm-startable, stops on a relative
  tolerance, runs on the device of its input. Its value ||A v|| / ||v|| is a lower bound.
* `certify_spectral_upper` proves ||W||_2 <= t for a dense W by a floating-point Cholesky
  factorisation of t^2 I - W^T W shifted by a rounding margin (Rump, BIT 2006): if the
  shifted matrix factors, the exact one is positive definite.
* `conv_spectral_bounds` bounds a zero-padded (possibly strided) convolution from above by
  the circular convolution on a grid large enough that no tap wraps around; the circular
  operator is block-diagonalised by the 2-D DFT (Sedghi, Gupta & Long, ICLR 2019), each
  frequency contributing a c_out x (c_in s^2) block whose exact spectral norm is taken.
  The true operator is a restriction of that one, so the maximum over frequencies is a
  certified upper bound; the top frequency's plane wave warm-starts the power method for
  the lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnsupportedError
from ..network import Activation, Affine, AvgPool2d, Conv2d, Flatten, Layer, MaxPool2d

UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
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


# ------------------------------------------------------------------------ power method
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


# ------------------------------------------------------------------------ dense matrices
def operator_norm(W: np.ndarray, norm: str) -> float:
    """||W||_{p->p} for p in {1, 2, inf}: exact (p = 2 by a float64 SVD)."""
    W = np.asarray(W, dtype=np.float64)
    if norm == "inf":
        return float(np.abs(W).sum(axis=1).max())
    if norm == "1":
        return float(np.abs(W).sum(axis=0).max())
    return float(np.linalg.svd(W, compute_uv=False)[0]) if W.size else 0.0


def _abs_sum_upper(total: float, terms: int) -> float:
    """A sum of `terms` non-negative float64 numbers is at most (1 + terms u) too small."""
    return total * (1 + 2 * (terms + 1) * UNIT_ROUNDOFF)


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


# ------------------------------------------------------------------------ batched matrices
def batched_max_sigma(B: torch.Tensor, best: float = 0.0, *, top: int = 16,
                      power_steps: int = 12, chunk: int = 512) -> tuple[float, float, int]:
    """Max over a batch (F, m, n) of spectral norms: returns (upper, lower, argmax) with
    lower <= max_f ||B_f||_2 <= upper (certified), or argmax -1 if nothing beats `best`.

    A few batched power steps rank the matrices; the best `top` get an exact Hermitian
    eigenvalue; every other matrix is ruled out at once by a Cholesky certificate of
    t^2 I - B B^H (shifted for rounding, Rump 2006) and only those that fail the
    certificate get an exact eigenvalue too.
    """
    if B.shape[0] == 0:
        return best, best, -1
    G = B @ B.mH if B.shape[1] <= B.shape[2] else B.mH @ B
    r = G.shape[-1]
    inner = B.shape[2] if B.shape[1] <= B.shape[2] else B.shape[1]
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((G.shape[0], r, 1), generator=gen, dtype=torch.float64).to(G)
    for _ in range(power_steps):
        x = G @ x
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-300)
    rayleigh = (x.mH @ G @ x).real.reshape(-1)
    lower, arg = best, -1

    def exact(idx: torch.Tensor) -> None:
        nonlocal lower, arg
        for start in range(0, idx.numel(), chunk):
            part = idx[start:start + chunk]
            sig = torch.linalg.eigvalsh(G[part])[:, -1].clamp_min(0).sqrt()
            k = int(torch.argmax(sig))
            if float(sig[k]) > lower:
                lower, arg = float(sig[k]), int(part[k])

    exact(torch.argsort(rayleigh, descending=True)[:top])
    t = lower * (1 + CERT_SLACK_EXACT)
    u = UNIT_ROUNDOFF
    fro2 = torch.linalg.vector_norm(B, dim=(1, 2)) ** 2
    trace_a = (r * t * t - torch.diagonal(G, dim1=-2, dim2=-1).real.sum(-1)).clamp_min(0)
    # complex products round with at most about 4x the real unit roundoff
    shift = 4 * (2 * inner * u * fro2 + 2 * (r + 1) * u * trace_a) * 1.01 + 1e-300
    A = -G
    A.diagonal(dim1=-2, dim2=-1).add_((t * t - shift)[:, None].to(A.dtype))
    _, info = torch.linalg.cholesky_ex(A)
    failed = torch.nonzero(info != 0).reshape(-1)
    if failed.numel():
        exact(failed)
    upper = max(t, lower * (1 + 4 * (r + 1) * u))
    return upper, lower, arg


# ------------------------------------------------------------------------ convolutions
def _conv_grid(in_shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]) -> tuple[int, int]:
    """Circular grid (per axis, in polyphase samples) on which no tap of a valid output
    wraps around: N >= H + 2 pad, N a multiple of the stride."""
    dims = []
    for ax in range(2):
        size = in_shape[1 + ax] + 2 * padding[ax]
        s = stride[ax]
        dims.append(max(math.ceil(size / s), math.ceil(kernel[ax] / s)))
    return dims[0], dims[1]


def _polyphase_taps(weight: torch.Tensor, stride: tuple[int, int]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rearrange taps for the strided DFT: returns (coeffs (oc, ic*s^2, T), di (T,), dj (T,))
    so that the block at frequency w is sum_t coeffs[..., t] exp(i (w_h di_t + w_w dj_t))."""
    oc, ic, kh, kw = weight.shape
    sh, sw = stride
    th, tw = math.ceil(kh / sh), math.ceil(kw / sw)
    padded = torch.zeros((oc, ic, th * sh, tw * sw), dtype=weight.dtype, device=weight.device)
    padded[:, :, :kh, :kw] = weight
    # padded[o, c, sh*i + a, sw*j + b] -> coeffs[o, (c, a, b), (i, j)]
    r = padded.reshape(oc, ic, th, sh, tw, sw).permute(0, 1, 3, 5, 2, 4)
    coeffs = r.reshape(oc, ic * sh * sw, th * tw)
    di = torch.arange(th, device=weight.device).repeat_interleave(tw)
    dj = torch.arange(tw, device=weight.device).repeat(th)
    return coeffs, di, dj


def conv_fourier_upper(weight: np.ndarray | torch.Tensor, in_shape: tuple[int, ...],
                       stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0), *,
                       device: Any = None, chunk: int = 2048) -> tuple[float, dict[str, Any]]:
    """Certified upper bound on the l2 norm of a zero-padded strided convolution (no bias).

    Returns (bound, details) where details hold the maximising frequency and the top
    singular vector of its block (used to warm-start the power method).
    """
    w = as_tensor(weight, device=device)
    coeffs, di, dj = _polyphase_taps(w, stride)
    mh, mw = _conv_grid(in_shape, tuple(w.shape[2:]), stride, padding)
    # real input: block(-w) = conj(block(w)), so half the frequencies of one axis suffice
    fu = torch.arange(mh, device=w.device, dtype=torch.float64) * (2 * math.pi / mh)
    fv = torch.arange(mw // 2 + 1, device=w.device, dtype=torch.float64) * (2 * math.pi / mw)
    freqs = torch.cartesian_prod(fu, fv)  # (F, 2)
    oc, cols, taps = coeffs.shape
    coeffs_c = coeffs.reshape(oc * cols, taps).to(torch.complex128)
    best, upper, best_freq = 0.0, 0.0, None
    for start in range(0, freqs.shape[0], chunk):
        f = freqs[start:start + chunk]
        phase = f[:, 0:1] * di[None, :] + f[:, 1:2] * dj[None, :]  # (F, T)
        E = torch.polar(torch.ones_like(phase), phase).T  # (T, F)
        blocks = (coeffs_c @ E).T.reshape(-1, oc, cols)
        up, low, arg = batched_max_sigma(blocks, best)
        upper = max(upper, up)
        if arg >= 0:
            best, best_freq = low, (float(f[arg, 0]), float(f[arg, 1]))
    # rounding: each block entry is a sum of `taps` complex products of magnitude <= |w|
    entry_err = 8 * (taps + 4) * UNIT_ROUNDOFF * float(coeffs.abs().sum(-1).max())
    bound = upper + entry_err * math.sqrt(oc * cols)
    return bound, {"grid": (mh, mw), "frequency": best_freq, "circular_norm": best}


def _plane_wave(weight: torch.Tensor, in_shape: tuple[int, ...], stride: tuple[int, int],
                padding: tuple[int, int], freq: tuple[float, float], sign: float
                ) -> torch.Tensor:
    """A real input aligned with the top singular vector of the block at `freq`."""
    coeffs, di, dj = _polyphase_taps(weight, stride)
    phase = freq[0] * di + freq[1] * dj
    block = (coeffs.to(torch.complex128) * torch.polar(torch.ones_like(phase),
                                                       sign * phase)).sum(-1)
    _, _, vh = torch.linalg.svd(block)
    c = vh[0].conj()  # top right singular vector, (ic*sh*sw,)
    ic = in_shape[0]
    sh, sw = stride
    mh, mw = _conv_grid(in_shape, tuple(weight.shape[2:]), stride, padding)
    i = torch.arange(mh, dtype=torch.float64, device=weight.device)
    j = torch.arange(mw, dtype=torch.float64, device=weight.device)
    wave = torch.polar(torch.ones(mh, mw, dtype=torch.float64, device=weight.device),
                       sign * (freq[0] * i[:, None] + freq[1] * j[None, :]))
    grid = c.reshape(ic, sh, sw)[:, :, :, None, None] * wave  # (ic, a, b, i, j)
    full = grid.permute(0, 3, 1, 4, 2).reshape(ic, mh * sh, mw * sw).real
    ph, pw = padding
    return full[:, ph:ph + in_shape[1], pw:pw + in_shape[2]].contiguous()


def conv_spectral_bounds(layer: Conv2d | AvgPool2d, in_shape: tuple[int, ...], *,
                         device: Any = None, tol: float = 1e-9, max_iter: int = 300,
                         iter_dtype: torch.dtype | None = None) -> NormBounds:
    """Certified upper (circular DFT bound) and lower (warm-started power method) bounds on
    the l2 operator norm of a convolution or average pooling, without building its matrix."""
    weight, stride, padding = _conv_weight(layer, in_shape)
    if isinstance(layer, AvgPool2d):
        in_shape = (1, *in_shape[1:])  # every channel is pooled alike
    w = weight.to(device=device, dtype=torch.float64)
    numel = int(np.prod(in_shape))
    out_numel = int(np.prod(F.conv2d(torch.zeros((1, *in_shape), dtype=torch.float64,
                                                 device=w.device), w, stride=stride,
                                     padding=padding).shape))
    if max(numel, out_numel) <= EXACT_SVD_MAX_DIM:
        # small enough to build the matrix: exact SVD and a Cholesky certificate
        eye = torch.eye(numel, dtype=torch.float64, device=w.device).reshape(numel, *in_shape)
        matrix = F.conv2d(eye, w, stride=stride, padding=padding).reshape(numel, -1).T
        nb = dense_spectral_bounds(matrix)
        return NormBounds(nb.lower, nb.upper, nb.certified, "matrix+" + nb.how, nb.details)
    upper, info = conv_fourier_upper(w, in_shape, stride, padding, device=device)
    if iter_dtype is None:
        iter_dtype = torch.float64 if numel * w.shape[0] <= 4_000_000 else torch.float32
    wi = w.to(iter_dtype)

    def op(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, wi, stride=stride, padding=padding)

    starts = []
    if info["frequency"] is not None:
        for sign in (1.0, -1.0):
            starts.append(_plane_wave(w, in_shape, stride, padding, info["frequency"], sign))
    gen = torch.Generator(device="cpu").manual_seed(0)
    starts.append(torch.randn(in_shape, generator=gen, dtype=torch.float64).to(w.device))
    x0 = torch.stack(starts).to(iter_dtype)
    res = power_method(op, tuple(in_shape), x0=x0, tol=tol, max_iter=max_iter)
    v = res.vector[0:1].to(torch.float64)
    lower = float(F.conv2d(v, w, stride=stride, padding=padding).norm() / v.norm())
    lower *= 1 - LOWER_MARGIN
    return NormBounds(lower, upper, True, "fourier+power",
                      {**info, "iterations": res.iterations, "converged": res.converged})


def _conv_weight(layer: Conv2d | AvgPool2d, in_shape: tuple[int, ...]
                 ) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    if isinstance(layer, Conv2d):
        return as_tensor(layer.weight), layer.stride, layer.padding
    # average pooling acts on each channel alike: its norm is that of one channel
    kh, kw = layer.kernel
    return torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=torch.float64), layer.stride, (0, 0)


# ------------------------------------------------------------------------ layers
def layer_operator(layer: Layer, device: Any = None, dtype: torch.dtype = torch.float64
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The linear part of an affine/conv/avgpool layer as a function on batches."""
    if isinstance(layer, Affine):
        W = as_tensor(layer.W, device=device, dtype=dtype)
        return lambda x: x @ W.T
    if isinstance(layer, Conv2d):
        K = as_tensor(layer.weight, device=device, dtype=dtype)
        return lambda x: F.conv2d(x, K, stride=layer.stride, padding=layer.padding)
    if isinstance(layer, AvgPool2d):
        return lambda x: F.avg_pool2d(x, layer.kernel, layer.stride)
    if isinstance(layer, Flatten):
        return lambda x: x.flatten(1)
    raise UnsupportedError(f"{type(layer).__name__} is not a linear layer")


def _conv_abs_norm(layer: Conv2d | AvgPool2d, in_shape: tuple[int, ...], norm: str) -> float:
    """Exact ||T||_inf (max row abs sum) or ||T||_1 (max column abs sum) of a convolution,
    by pushing a tensor of ones through the layer with |weights|."""
    weight, stride, padding = _conv_weight(layer, in_shape)
    K = weight.abs()
    c = in_shape[0] if isinstance(layer, Conv2d) else 1
    ones = torch.ones((1, c, in_shape[1], in_shape[2]), dtype=torch.float64)
    if norm == "inf":
        out = F.conv2d(ones, K, stride=stride, padding=padding)
        return float(out.max())
    out_shape = F.conv2d(ones, K, stride=stride, padding=padding).shape
    back = torch.autograd.functional.vjp(
        lambda x: F.conv2d(x, K, stride=stride, padding=padding), ones,
        torch.ones(out_shape, dtype=torch.float64))[1]
    return float(back.max())


def layer_norm_bounds(layer: Layer, in_shape: tuple[int, ...], norm: str, *,
                      device: Any = None) -> NormBounds:
    """Bounds on the Lipschitz constant of one layer in the l_p norm (same p in and out)."""
    if isinstance(layer, Flatten):
        return NormBounds(1.0, 1.0, True, "identity")
    if isinstance(layer, Activation):
        lip = layer.lipschitz
        return NormBounds(lip, lip, True, "slope")
    if isinstance(layer, MaxPool2d):
        # |max_W x - max_W y| <= max_W |x - y|; an element lies in at most `overlap`
        # windows (Avant & Morgansen, Theorem 3): sqrt(overlap) in l2, overlap in l1.
        c = layer.overlap
        val = {"2": math.sqrt(c), "1": float(c), "inf": 1.0}[norm]
        return NormBounds(1.0, val, True, "overlap")
    if isinstance(layer, Affine):
        if norm == "2":
            return dense_spectral_bounds(layer.W, device=device)
        axis = 1 if norm == "inf" else 0
        sums = np.abs(layer.W).sum(axis=axis)
        val = float(sums.max())
        return NormBounds(val, _abs_sum_upper(val, layer.W.shape[axis]), True, "abs-sum")
    if isinstance(layer, (Conv2d, AvgPool2d)):
        if norm == "2":
            return conv_spectral_bounds(layer, in_shape, device=device)
        val = _conv_abs_norm(layer, in_shape, norm)
        taps = int(np.prod(_conv_weight(layer, in_shape)[0].shape[1:]))
        return NormBounds(val, _abs_sum_upper(val, taps), True, "abs-sum")
    raise UnsupportedError(f"no norm bound for layer {type(layer).__name__}")


def network_layer_bounds(net: Any, norm: str, *, device: Any = None) -> list[NormBounds]:
    """Per-layer bounds for every layer of `net`, cached on the network."""
    key = ("layer_bounds", norm, str(device))
    cache = net._cache
    if key not in cache:
        shapes = net.shapes()
        cache[key] = [layer_norm_bounds(layer, shapes[i], norm, device=device)
                      for i, layer in enumerate(net.layers)]
    return list(cache[key])


def frobenius_norm(layer: Layer, in_shape: tuple[int, ...]) -> float:
    """Frobenius norm of a linear layer's matrix (for convolutions: each tap weighted by the
    number of output positions where it meets a real, non-padding input)."""
    if isinstance(layer, Affine):
        # scaled by a power of two (exact) so that the sum of squares cannot underflow
        k = math.frexp(float(np.abs(layer.W).max(initial=0.0)))[1]
        return math.ldexp(float(np.linalg.norm(layer.W * 2.0**-k)), k)
    if isinstance(layer, (Conv2d, AvgPool2d)):
        weight, stride, padding = _conv_weight(layer, in_shape)
        e = math.frexp(float(weight.abs().max()))[1] if weight.numel() else 0
        weight = weight * 2.0**-e
        counts = []
        for ax in range(2):
            size, k = in_shape[1 + ax], weight.shape[2 + ax]
            n_out = (size + 2 * padding[ax] - k) // stride[ax] + 1
            pos = torch.arange(n_out)[:, None] * stride[ax] - padding[ax] + torch.arange(k)
            counts.append(((pos >= 0) & (pos < size)).sum(0).to(torch.float64))
        mult = counts[0][:, None] * counts[1][None, :]
        total = float(((weight ** 2) * mult).sum())
        channels = in_shape[0] if isinstance(layer, AvgPool2d) else 1
        return math.ldexp(math.sqrt(total * channels), e)
    raise UnsupportedError(f"no Frobenius norm for layer {type(layer).__name__}")
