"""LipSDP as an eigenvalue optimisation over the multipliers, by a first-order method in torch.

Wang, Hu, Havens, Araujo, Zheng, Chen & Jha ("On the scalability and memory efficiency of
semidefinite programs for Lipschitz constant estimation of neural networks", ICLR 2024)
turn LipSDP into the minimisation of a largest eigenvalue over the multipliers, which
first-order methods and autodiff frameworks handle without an interior-point method's
memory. Here the eigenvalue function is the one the certificate itself evaluates: for
multipliers T whose hidden block H(T) of -M(0, T) is positive definite, the least feasible
rho is

    rho*(T) = lambda_max(B(T)^T H(T)^{-1} B(T) + C_0(T)),

B the coupling of the input block and C_0 its T-dependent part. rho*(T) is convex in T (the
fibre minimum of a jointly convex feasible set) and infinite where H(T) is not definite,
so no penalty constant is needed and every iterate is a candidate certificate. H is block
tridiagonal, so rho*(T) is computed by eliminating the layers from the last one up (one
Cholesky factor per layer: memory sum n_k^2, time sum n_k^3, not (sum n_k)^3). Steps are
BFGS directions over log T (keeping T > 0) on the log of a smoothed rho* (the
log-sum-exp of the eigenvalues, its temperature lowered in turn down to lambda_max itself;
quasi-Newton methods also suit the nonsmooth end, Lewis & Overton, Math. Prog. 2013)
with a batched line search: several step lengths are evaluated in one batched
factorisation and the best is kept; the best value of rho* seen never increases. The
start is the ECLipsE-Fast point (feasible in closed form), so a certified value exists
from the first iteration; the run is anytime: it stops at `time_limit` with the best
multipliers so far, which numerics/lmi.py then certifies in float64.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..numerics.lmi import (
    Certificate,
    LMIData,
    certify_multipliers,
    compress_first_layer,
    eclipse_point,
    layer_scales,
    normalise,
    unscale,
)

# Step lengths tried at once along the quasi-Newton direction by the batched line search.
STEP_FACTORS = (1.0, 0.5, 0.25, 0.1, 0.02, 2.0)
# Inverse-Hessian guess before the first update: a step of this size in log T per unit
# gradient of log rho; after the n-th failed line search in a row, FIRST_STEP SHRINK**(4n),
# and the run stops after MAX_FAILURES of them.
FIRST_STEP = 0.05
SHRINK = 0.5
MAX_FAILURES = 3
# Stop when log rho has improved by less than this over STALL_WINDOW steps (1e-7 relative
# on the value).
STALL_TOL = 2e-7
STALL_WINDOW = 20
MAX_ITERS = 5000
# Smoothing levels of lambda_max (temperature relative to the value), lowered in turn when
# progress stalls; the last, 0, is lambda_max itself.
SMOOTHING = (1e-2, 1e-3, 1e-4, 1e-5, 0.0)
# The best multipliers are re-certified (float64, numpy) at most this often (seconds) so
# that a time limit always leaves a certified value near the current best.
CERTIFY_EVERY = 5.0


@dataclass
class EigResult:
    """Multipliers in the caller's coordinates and what the run found."""

    status: str  # "ok", "timeout", "error"
    multipliers: list[np.ndarray] | None = None
    certificate: Certificate | None = None
    rho_estimate: float = math.nan
    iterations: int = 0
    message: str = ""
    history: list[tuple[float, float]] = field(default_factory=list)  # (seconds, value)


class SchurValue:
    """rho*(T) of one (compressed, normalised) instance for a batch of multipliers."""

    def __init__(self, data: LMIData, device: Any = None, dtype: torch.dtype = torch.float64):
        self.data = data
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.W = [torch.as_tensor(W, dtype=dtype, device=self.device) for W in data.weights]
        self.slopes = data.slopes
        WL = self.W[-1]
        self.gram_last = WL.T @ WL

    def __call__(self, T: list[torch.Tensor], smoothing: float = 0.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """(smoothed value, rho*(T)) for T[k] of shape (batch, n_{k+1}); +inf where H(T) is
        not definite. The smoothed value replaces lambda_max by the log-sum-exp of all
        eigenvalues at temperature mu = smoothing * lambda_max (an upper bound within
        mu log n, smooth where lambda_max is multiple; Nesterov, Math. Prog. 2005)."""
        K = len(self.W)
        batch = T[0].shape[0]
        bad = torch.zeros(batch, dtype=torch.bool, device=self.device)
        S = None  # Schur complement of the blocks below the current one
        for k in range(K - 1, 0, -1):  # hidden layer k (1-based), multipliers T[k-1]
            t = T[k - 1]
            D = torch.diag_embed(2 * t)
            if k == K - 1:
                D = D - self.gram_last
            else:
                a, b = self.slopes[k]
                W = self.W[k]
                tn = T[k]
                if a * b != 0.0:
                    D = D + 2 * a * b * (W.T * tn[:, None, :]) @ W
                # eliminate block k+1: D - E S^{-1} E^T with E^T = -(a+b) diag(t_{k+1}) W
                ET = -(a + b) * tn[:, :, None] * W
                Y = torch.linalg.solve_triangular(S, ET, upper=False)
                D = D - Y.transpose(-1, -2) @ Y
            L, info = torch.linalg.cholesky_ex(D)
            bad = bad | (info != 0)
            S = torch.where(bad[:, None, None], torch.eye(D.shape[-1], dtype=D.dtype,
                                                          device=D.device), L)
        a, b = self.slopes[0]
        W0 = self.W[0]
        t1 = T[0]
        ET = -(a + b) * t1[:, :, None] * W0
        Y = torch.linalg.solve_triangular(S, ET, upper=False)
        F = Y.transpose(-1, -2) @ Y
        if a * b != 0.0:
            F = F - 2 * a * b * (W0.T * t1[:, None, :]) @ W0
        F = (F + F.transpose(-1, -2)) / 2
        lam = torch.linalg.eigvalsh(F)
        rho = lam[:, -1]
        if smoothing > 0.0:
            mu = (smoothing * rho.detach().abs()).clamp_min(1e-300)[:, None]
            smooth = rho + mu[:, 0] * torch.logsumexp((lam - rho[:, None]) / mu, dim=1)
        else:
            smooth = rho
        inf = torch.full_like(rho, math.inf)
        return torch.where(bad, inf, smooth), torch.where(bad, inf, rho)


def _expand(theta: torch.Tensor, data: LMIData, variant: str) -> list[torch.Tensor]:
    """Per-layer multipliers exp(theta) for a batch of parameter vectors (batch, p)."""
    out, pos = [], 0
    for n in data.hidden:
        if variant == "neuron":
            out.append(torch.exp(theta[:, pos:pos + n]))
            pos += n
        else:
            out.append(torch.exp(theta[:, pos:pos + 1]).expand(-1, n))
            pos += 1
    return out


def solve_first_order(data: LMIData, variant: str, *, time_limit: float | None = None,
                      device: Any = None, progress: bool = False,
                      max_iters: int = MAX_ITERS) -> EigResult:
    """Minimise rho*(T) from the ECLipsE-Fast point; multipliers in `data`'s coordinates,
    the best of them certified (`certificate`)."""
    start = time.perf_counter()
    deadline = None if time_limit is None else start + float(time_limit)
    small = compress_first_layer(data)
    scales = layer_scales(small)
    dn = normalise(small, scales)
    point = eclipse_point(dn)
    if point is None:
        return EigResult("error", message="no feasible starting point (ECLipsE-Fast broke "
                                          "down)")
    T0 = point[0]
    if variant == "neuron":
        theta0 = np.concatenate([np.log(t) for t in T0])
    else:
        theta0 = np.array([math.log(float(t[0])) for t in T0])
    f = SchurValue(dn, device=device)
    theta = torch.as_tensor(theta0, dtype=f.dtype, device=f.device)[None, :]

    def to_caller(th: torch.Tensor) -> list[np.ndarray]:
        T = [t[0].detach().cpu().numpy() for t in _expand(th, dn, variant)]
        return unscale(scales, 1.0, T)[1]

    best_theta = theta.clone()
    with torch.no_grad():
        best = float(f(_expand(theta, dn, variant))[1][0])
    if not math.isfinite(best):
        return EigResult("error", message="the starting point is not feasible")
    certified_T = to_caller(best_theta)
    cert = certify_multipliers(data, certified_T)
    last_cert = time.perf_counter()
    history = [(time.perf_counter() - start, cert.value if cert.certified else math.nan)]
    factors = torch.as_tensor(STEP_FACTORS, dtype=f.dtype, device=f.device)[:, None]
    smoothing = SMOOTHING[0]

    def value_and_grad(th: torch.Tensor) -> tuple[float, torch.Tensor, float]:
        th = th.clone().requires_grad_(True)
        smooth, true = f(_expand(th, dn, variant), smoothing)
        val = torch.log(smooth[0])
        (grad,) = torch.autograd.grad(val, th)
        return (float(val.detach()), torch.nan_to_num(grad[0].detach()),
                float(true[0].detach()))

    p = theta.shape[1]
    eye = torch.eye(p, dtype=f.dtype, device=f.device)
    Hinv, fresh, failures = eye * FIRST_STEP, True, 0
    theta_k = best_theta
    phi, grad, _ = value_and_grad(theta_k)
    recent = [phi]
    status, it = "ok", 0
    bar = _bar(progress, max_iters)

    def sharpen() -> bool:
        """Lower the smoothing (restarting BFGS at the current point); False at the end."""
        nonlocal smoothing, phi, grad, Hinv, fresh, failures, recent
        lower = [s_ for s_ in SMOOTHING if s_ < smoothing]
        if not lower:
            return False
        smoothing = lower[0]
        phi, grad, _ = value_and_grad(theta_k)
        Hinv, fresh, failures, recent = eye * FIRST_STEP, True, 0, [phi]
        return True

    try:
        while it < max_iters:
            it += 1
            if deadline is not None and time.perf_counter() >= deadline:
                status = "timeout"
                break
            direction = -(Hinv @ grad)
            if float(direction @ grad) >= 0:  # not a descent direction: restart
                Hinv, fresh = eye * FIRST_STEP, True
                direction = -(Hinv @ grad)
            with torch.no_grad():
                cand = theta_k + factors * direction[None, :]
                smooth, true = f(_expand(cand, dn, variant), smoothing)
                vals = torch.log(smooth)
                j = int(torch.argmin(vals))
                k = int(torch.argmin(true))
                if float(true[k]) < best:
                    best, best_theta = float(true[k]), cand[k:k + 1].clone()
            if not float(vals[j]) < phi:
                # restart from a shorter gradient step; sharpen when even those fail
                failures += 1
                if failures > MAX_FAILURES and not sharpen():
                    break
                Hinv, fresh = eye * FIRST_STEP * SHRINK ** (4 * failures), True
                continue
            failures = 0
            new_theta = cand[j:j + 1].clone()
            new_phi, new_grad, _ = value_and_grad(new_theta)
            s_, y_ = (new_theta - theta_k)[0], new_grad - grad
            sy = float(s_ @ y_)
            if sy > 1e-12 * float(s_ @ s_) ** 0.5 * float(y_ @ y_) ** 0.5:
                if fresh:  # scale the first guess by the curvature seen (Nocedal & Wright)
                    Hinv, fresh = eye * (sy / float(y_ @ y_)), False
                rho_ = 1.0 / sy
                V = eye - rho_ * torch.outer(s_, y_)
                Hinv = V @ Hinv @ V.T + rho_ * torch.outer(s_, s_)
            theta_k, phi, grad = new_theta, new_phi, new_grad
            recent.append(phi)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(value=f"{math.sqrt(best) * float(np.prod(scales)):.6g}")
            now = time.perf_counter()
            if now - last_cert >= CERTIFY_EVERY:
                cand_T = to_caller(best_theta)
                c = certify_multipliers(data, cand_T)
                if c.certified and (not cert.certified or c.value < cert.value):
                    cert, certified_T = c, cand_T
                last_cert = now
                history.append((now - start, cert.value if cert.certified else math.nan))
            if len(recent) > STALL_WINDOW and recent[-STALL_WINDOW - 1] - phi <= STALL_TOL:
                if not sharpen():
                    break
    finally:
        if bar is not None:
            bar.close()
    cand_T = to_caller(best_theta)
    c = certify_multipliers(data, cand_T)
    if c.certified and (not cert.certified or c.value < cert.value):
        cert, certified_T = c, cand_T
    history.append((time.perf_counter() - start, cert.value if cert.certified else math.nan))
    rho_caller = best * float(np.prod(scales)) ** 2
    return EigResult(status, certified_T, cert, rho_caller, it, history=history)


def _bar(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="step", dynamic_ncols=True,
                desc="lipsdp first-order", leave=False)
