"""Maximise ||A diag(s) B||_2 over the vertices s of the box [alpha, beta]^n.

This is the inner problem of SeqLip (Scaman & Virmaux 2018) and, with A = M2 and B = M1,
the exact l2 constant of a one-hidden-layer ReLU net whose activation patterns are all
reachable. The objective is convex in s, so its maximum over the box is at a vertex.

`max_pattern_norm` is exact: it enumerates the 2^n vertices in batches, rules most of them
out with the bound lambda_max(G) <= ||G^2||_F^(1/2) (G the Gram matrix, two small batched
matrix products per vertex), and takes an exact eigenvalue only where that bound could beat
the best value so far. `greedy_pattern_norm` is the alternating ascent used by greedy
SeqLip: for the current top singular pair (x, y), s_j = beta if (A^T y)_j (B x)_j > 0 else
alpha maximises y^T A diag(s) B x, so the norm never decreases.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..numerics.spectral import as_tensor

# Patterns per batch: 2^LOW_BITS low-bit patterns are added to one high-bit pattern
# (measured on 2 cores at n = 20: 2.3 s with 8 or 9, 4.0 s with 6).
LOW_BITS = 9
# The screen prunes a vertex only when its bound is below best / (1 + SCREEN_SLACK), which
# absorbs the float64 rounding of the screen itself (relative error ~ 1e-13 here).
SCREEN_SLACK = 1e-9
# Relative margin on an exact float64 eigenvalue-based norm before it is called an upper
# bound (eigvalsh is backward stable: error ~ r * unit roundoff * ||G||).
EXACT_MARGIN = 1e-11


@dataclass(frozen=True)
class PatternMax:
    """lower <= max_s ||A diag(s) B||_2 <= upper; `pattern` attains `lower`."""

    upper: float
    lower: float
    pattern: np.ndarray
    complete: bool  # False when a time limit stopped the enumeration
    evaluated: int = 0  # vertices whose norm was computed exactly


def _bits(k: int) -> torch.Tensor:
    idx = torch.arange(2 ** k)
    return ((idx[:, None] >> torch.arange(k)) & 1).to(torch.float64)


def pattern_norm(A: torch.Tensor, B: torch.Tensor, s: torch.Tensor) -> float:
    """||A diag(s) B||_2 in float64."""
    return float(torch.linalg.matrix_norm((A * s) @ B, ord=2))


def screened_max_norm(M: np.ndarray | torch.Tensor, best: float,
                      work: dict | None = None) -> tuple[float, int, int]:
    """The largest ||M[p]||_2 over a batch (P, m, n) if it beats `best`.

    Returns (value, index, exact evaluations), with index -1 when nothing beats `best`.
    The screen lambda_max(G) <= ||G^2||_F^(1/2) (G the smaller Gram matrix) rules out most
    matrices with two small products; the others get an exact Hermitian eigenvalue.
    `work` (a dict kept by the caller across calls) holds reusable buffers: allocating
    fresh ones per batch made glibc map and unmap pages each time, 3x slower at n = 20.
    """
    M = as_tensor(M)
    if min(M.shape[1:]) == 1:
        vals = torch.linalg.vector_norm(M, dim=(1, 2))
        k = int(torch.argmax(vals))
        return (float(vals[k]), k, M.shape[0]) if float(vals[k]) > best else (best, -1,
                                                                               M.shape[0])
    left = M.shape[1] <= M.shape[2]
    r = M.shape[1] if left else M.shape[2]
    work = {} if work is None else work
    key = (M.shape[0], r)
    if work.get("key") != key:
        work.update(key=key, G=M.new_empty((M.shape[0], r, r)),
                    Gs=M.new_empty((M.shape[0], r, r)), G2=M.new_empty((M.shape[0], r, r)))
    G, Gs, G2 = work["G"], work["Gs"], work["G2"]
    torch.matmul(M, M.mT, out=G) if left else torch.matmul(M.mT, M, out=G)
    tr = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1).clamp_min(1e-300)
    torch.div(G, tr[:, None, None], out=Gs)
    torch.matmul(Gs, Gs, out=G2)
    screen = (torch.linalg.matrix_norm(G2).clamp_min(0).sqrt() * tr).sqrt()
    cand = torch.nonzero(screen * (1 + SCREEN_SLACK) >= best).reshape(-1)
    if cand.numel() == 0:
        return best, -1, 0
    sig = torch.linalg.eigvalsh(G[cand])[:, -1].clamp_min(0).sqrt()
    k = int(torch.argmax(sig))
    if float(sig[k]) > best:
        return float(sig[k]), int(cand[k]), cand.numel()
    return best, -1, cand.numel()


def greedy_pattern_norm(A: np.ndarray | torch.Tensor, B: np.ndarray | torch.Tensor,
                        alpha: float = 0.0, beta: float = 1.0, *, starts: int = 8,
                        max_rounds: int = 200, seed: int = 0) -> tuple[float, np.ndarray]:
    """Alternating ascent from several starts; returns (value, pattern). A lower bound on
    the max over vertices (each value is attained), no upper guarantee."""
    A, B = as_tensor(A), as_tensor(B)
    n = A.shape[1]
    gen = torch.Generator().manual_seed(seed)
    inits = [torch.full((n,), beta, dtype=torch.float64)]
    lo = torch.tensor(alpha, dtype=torch.float64)
    hi = torch.tensor(beta, dtype=torch.float64)
    inits += [torch.where(torch.rand(n, generator=gen) < 0.5, lo, hi)
              for _ in range(max(starts - 1, 0))]
    best_val, best_s = -1.0, inits[0]
    for s in inits:
        for _ in range(max_rounds):
            M = (A * s) @ B
            U, _, Vh = torch.linalg.svd(M, full_matrices=False)
            p, q = A.T @ U[:, 0], B @ Vh[0]
            s_new = torch.where(p * q > 0, hi, lo)
            if torch.equal(s_new, s):
                break
            s = s_new
        val = pattern_norm(A, B, s)
        if val > best_val:
            best_val, best_s = val, s
    return best_val, best_s.numpy()


def max_pattern_norm(A: np.ndarray | torch.Tensor, B: np.ndarray | torch.Tensor,
                     alpha: float = 0.0, beta: float = 1.0, *, time_limit: float | None = None,
                     lower_hint: float = 0.0) -> PatternMax:
    """Exact max over s in {alpha, beta}^n of ||A diag(s) B||_2 (A: r x n, B: n x q).

    With a time limit the enumeration may stop early; the result then keeps a valid upper
    bound, max(best found, ||A|| ||B|| max(|alpha|, |beta|)), and `complete` is False.
    """
    A, B = as_tensor(A), as_tensor(B)
    n = A.shape[1]
    start = time.perf_counter()
    greedy_val, greedy_s = greedy_pattern_norm(A, B, alpha, beta)
    best = max(greedy_val, lower_hint)
    best_s = torch.as_tensor(greedy_s)
    low = min(n, LOW_BITS)
    high = n - low
    lo_bits = _bits(low)
    # s = alpha + (beta - alpha) * bits; M(s) = alpha A B + (beta - alpha) A diag(bits) B
    base = alpha * (A @ B)
    d = beta - alpha
    A_lo, B_lo = A[:, high:], B[high:]
    M_lo = torch.einsum("ij,pj,jk->pik", A_lo, d * lo_bits, B_lo)
    A_hi, B_hi = A[:, :high], B[:high]
    evaluated = 0
    complete = True
    M, work = torch.empty_like(M_lo), {}
    for h in range(2 ** high):
        if time_limit is not None and time.perf_counter() - start > time_limit:
            complete = False
            break
        hbits = torch.tensor([(h >> j) & 1 for j in range(high)], dtype=torch.float64)
        M_hi = base + (A_hi * (d * hbits)) @ B_hi
        torch.add(M_hi, M_lo, out=M)
        val, k, count = screened_max_norm(M, best, work)
        evaluated += count
        if k >= 0:
            best = val
            best_s = alpha + d * torch.cat([hbits, lo_bits[k]])
    upper = best * (1 + EXACT_MARGIN)
    if not complete:
        top = max(abs(alpha), abs(beta))
        upper = max(upper, float(torch.linalg.matrix_norm(A, ord=2))
                    * float(torch.linalg.matrix_norm(B, ord=2)) * top * (1 + 1e-9))
    # the reported pattern's value is recomputed directly so that `lower` is attained
    lower = pattern_norm(A, B, best_s.to(torch.float64))
    return PatternMax(upper, lower, best_s.numpy(), complete, evaluated)
