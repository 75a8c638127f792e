"""Operator norms of the network's linear layers: exact, estimated, and certified.

Dense layers go through `numerics.spectral` (the autograd power method of Scaman & Virmaux,
NeurIPS 2018, Algorithm 1, and certified Gram/Cholesky bounds). This module adds the layers
themselves:
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
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnsupportedError
from ..network import (
    Activation,
    Affine,
    AvgPool2d,
    BatchNorm,
    Conv2d,
    Flatten,
    GroupSort,
    Layer,
    MaxPool2d,
)
from ..numerics.rounding import UNIT_ROUNDOFF, abs_sum_upper
from ..numerics.spectral import (
    CERT_SLACK_EXACT,
    EXACT_SVD_MAX_DIM,
    LOWER_MARGIN,
    NormBounds,
    as_tensor,
    dense_spectral_bounds,
    power_method,
)


# ------------------------------------------------------------------------ dense matrices
def operator_norm(W: np.ndarray, norm: str) -> float:
    """||W||_{p->p} for p in {1, 2, inf}: exact (p = 2 by a float64 SVD)."""
    W = np.asarray(W, dtype=np.float64)
    if norm == "inf":
        return float(np.abs(W).sum(axis=1).max())
    if norm == "1":
        return float(np.abs(W).sum(axis=0).max())
    return float(np.linalg.svd(W, compute_uv=False)[0]) if W.size else 0.0


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
    if isinstance(layer, BatchNorm):
        # a diagonal map (each channel's scale repeated): its norm is the largest |scale|,
        # exactly, in every l_p
        val = float(np.abs(layer.scale).max(initial=0.0))
        return NormBounds(val, val, True, "diagonal")
    if isinstance(layer, GroupSort):
        # a permutation of each group: ||sort(a) - sort(b)||_p <= ||a - b||_p for p >= 1
        return NormBounds(1.0, 1.0, True, "sort")
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
        return NormBounds(val, abs_sum_upper(val, layer.W.shape[axis]), True, "abs-sum")
    if isinstance(layer, (Conv2d, AvgPool2d)):
        if norm == "2":
            return conv_spectral_bounds(layer, in_shape, device=device)
        val = _conv_abs_norm(layer, in_shape, norm)
        taps = int(np.prod(_conv_weight(layer, in_shape)[0].shape[1:]))
        return NormBounds(val, abs_sum_upper(val, taps), True, "abs-sum")
    raise UnsupportedError(f"no norm bound for layer {type(layer).__name__}")


def network_layer_bounds(net: Any, norm: str, *, device: Any = None) -> list[NormBounds]:
    """Per-layer bounds for every layer of `net` (memoised on the network)."""
    def compute() -> list[NormBounds]:
        shapes = net.shapes()
        return [layer_norm_bounds(layer, shapes[i], norm, device=device)
                for i, layer in enumerate(net.layers)]

    return list(net.memo(__name__, ("layer_bounds", norm, str(device)), compute))


def layer_upper_bounds(net: Any, norm: str = "2", *, device: Any = None) -> list[float]:
    """Each layer's certified global norm (the factors of AutoLip's product): the upper
    values of `network_layer_bounds` when those were computed, else the same routines
    without their power-method lower bounds (large convolutions: the Fourier bound alone).
    Memoised on the network."""
    if net.memoised(__name__, ("layer_bounds", norm, str(device))):
        return [b.upper for b in network_layer_bounds(net, norm, device=device)]

    def compute() -> list[float]:
        shapes = net.shapes()
        return [layer_upper_bound(layer, shapes[i], norm, device=device)
                for i, layer in enumerate(net.layers)]

    return list(net.memo(__name__, ("layer_upper_bounds", norm, str(device)), compute))


def layer_upper_bound(layer: Layer, in_shape: tuple[int, ...], norm: str, *,
                      device: Any = None) -> float:
    """One layer's certified global norm without a power-method lower bound (a large
    convolution or average pooling in l2: the Fourier bound alone)."""
    if norm == "2" and isinstance(layer, (Conv2d, AvgPool2d)):
        weight, stride, padding = _conv_weight(layer, in_shape)
        # average pooling: every channel is pooled alike, one channel stands for all
        shape = in_shape if isinstance(layer, Conv2d) else (1, *in_shape[1:])
        out = Conv2d(weight.numpy(), None, stride, padding).out_shape(shape)
        if max(int(np.prod(shape)), int(np.prod(out))) > EXACT_SVD_MAX_DIM:
            return conv_fourier_upper(weight, shape, stride, padding, device=device)[0]
    return layer_norm_bounds(layer, in_shape, norm, device=device).upper


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
