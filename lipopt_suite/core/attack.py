"""l2 adversarial attacks: upper bounds on the minimal adversarial perturbation.

A point x with argmax f(x) != label is a witness that the minimal adversarial perturbation
around x0 is at most ||x - x0||_2; every point returned here is re-checked in float64 before
it is reported. These are plain functions for the `lipopt certify` report, not registered
methods (they bound a robustness radius, not a Lipschitz constant).

* `fgsm_l2`: the fast gradient method in l2 (Goodfellow et al., ICLR 2015, with the l2
  normalised gradient): a line search along the margin's gradient at x0.
* `pgd_l2`: projected gradient ascent on the margin in the l2 ball of a given radius, with
  random restarts (Madry et al., ICLR 2018); `pgd_min_perturbation` bisects on the radius.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..network import Network


@dataclass(frozen=True)
class AttackResult:
    """The closest adversarial example found (radius inf and x None when none was found)."""

    method: str
    radius: float
    x: np.ndarray | None
    label: int
    adversarial_label: int | None
    evaluations: int

    @property
    def found(self) -> bool:
        return self.x is not None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method,
                "radius": self.radius if math.isfinite(self.radius) else None,
                "adversarial_label": self.adversarial_label, "evaluations": self.evaluations}


def margin_loss(logits: torch.Tensor, label: int) -> torch.Tensor:
    """max_{j != label} z_j - z_label for each row: positive exactly when misclassified."""
    other = logits.clone()
    other[:, label] = -math.inf
    return other.amax(1) - logits[:, label]


def _setup(net: Network, center: Any, label: int, device: Any,
           dtype: torch.dtype = torch.float64) -> tuple[Any, torch.Tensor, int]:
    net.validate()
    x0 = np.asarray(center, dtype=np.float64).reshape(-1)
    if x0.size != net.input_dim:
        raise InputError(f"centre has {x0.size} entries but the network input has "
                         f"{net.input_dim}")
    if not 0 <= int(label) < net.output_dim:
        raise InputError(f"label {label} is out of range: the network has {net.output_dim} "
                         "outputs")
    module = net.to_torch(device=device, dtype=dtype)
    return module, torch.as_tensor(x0, device=device, dtype=dtype), int(label)


def _forward(net: Network, module: Any, x: torch.Tensor) -> torch.Tensor:
    return module(x.reshape(-1, *net.input_shape)).reshape(x.shape[0], -1)


def _verified(net: Network, x0: np.ndarray, x: np.ndarray, label: int
              ) -> tuple[float, int] | None:
    """(||x - x0||, new class) if x is misclassified when evaluated in float64, else None."""
    logits = np.asarray(net(x.reshape(net.input_shape)), dtype=np.float64).reshape(-1)
    cls = int(np.argmax(logits))
    others = np.delete(logits, label)
    if cls == label or not others.max() > logits[label]:
        return None
    return float(np.linalg.norm(x - x0)), cls


def pgd_l2(net: Network, center: Any, label: int, radius: float, *, restarts: int = 32,
           steps: int = 100, step_size: float | None = None, seed: int = 0,
           device: Any = None, dtype: torch.dtype = torch.float64
           ) -> tuple[float, np.ndarray]:
    """The largest margin loss max_{j != label} f_j - f_label found in the l2 ball of
    `radius` around x0, and the point achieving it. Restart 0 starts at x0, the others
    uniformly in the ball; each takes `steps` normalised gradient steps of `step_size`
    (default 2.5 radius / steps) and is projected back onto the ball. The search runs in
    `dtype`; the returned loss is re-evaluated in float64."""
    if not (math.isfinite(radius) and radius > 0):
        raise InputError(f"attack radius must be positive and finite, got {radius}")
    module, x0, label = _setup(net, center, label, device, dtype)
    x0_64 = np.asarray(center, dtype=np.float64).reshape(-1)
    n = x0.numel()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    d = torch.randn((restarts, n), generator=gen, dtype=torch.float64)
    d = d / torch.linalg.vector_norm(d, dim=1, keepdim=True).clamp_min(1e-300)
    rad = radius * torch.rand((restarts, 1), generator=gen, dtype=torch.float64) ** (1.0 / n)
    delta = (d * rad).to(device=x0.device, dtype=dtype)
    delta[0] = 0.0
    alpha = step_size if step_size is not None else 2.5 * radius / max(steps, 1)
    best_loss = torch.full((restarts,), -math.inf, dtype=dtype, device=x0.device)
    best_delta = delta.detach().clone()
    for _ in range(steps + 1):
        delta.requires_grad_(True)
        loss = margin_loss(_forward(net, module, x0 + delta), label)
        with torch.no_grad():
            better = loss > best_loss
            best_loss = torch.where(better, loss, best_loss)
            best_delta[better] = delta[better]
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            g = grad / torch.linalg.vector_norm(grad, dim=1, keepdim=True).clamp_min(1e-30)
            delta = delta.detach() + alpha * g
            nrm = torch.linalg.vector_norm(delta, dim=1, keepdim=True)
            delta = delta * torch.clamp(radius / nrm.clamp_min(1e-30), max=1.0)
    # back in float64: the best few candidates, pulled into the closed ball exactly
    cand = best_delta[torch.argsort(best_loss, descending=True)[:4]].cpu().numpy()
    cand = cand.astype(np.float64)
    nrm = np.linalg.norm(cand, axis=1, keepdims=True)
    cand = cand * np.minimum(1.0, radius / np.maximum(nrm, 1e-300) * (1 - 1e-12))
    points = x0_64 + cand
    logits = np.asarray(net(points.reshape(-1, *net.input_shape)), np.float64)
    losses = margin_loss(torch.as_tensor(logits.reshape(len(points), -1)), label).numpy()
    k = int(np.argmax(losses))
    return float(losses[k]), points[k]


def pgd_min_perturbation(net: Network, center: Any, label: int, *, restarts: int = 32,
                         steps: int = 100, seed: int = 0, device: Any = None,
                         start: float | None = None, rel_tol: float = 1e-2,
                         max_doublings: int = 40, max_bisections: int = 20) -> AttackResult:
    """An upper bound on the minimal adversarial perturbation: the smallest radius (to
    `rel_tol`) at which PGD finds a misclassified point, doubling from `start` and then
    bisecting; the reported radius is the distance of the verified witness itself."""
    x0 = np.asarray(center, dtype=np.float64).reshape(-1)
    _setup(net, x0, label, device)
    evaluations = 0
    best: tuple[float, np.ndarray, int] | None = None

    def attempt(radius: float) -> bool:
        nonlocal evaluations, best
        evaluations += 1
        loss, x = pgd_l2(net, x0, label, radius, restarts=restarts, steps=steps, seed=seed,
                         device=device)
        if loss <= 0:
            return False
        hit = _verified(net, x0, x, label)
        if hit is None:
            return False
        if best is None or hit[0] < best[0]:
            best = (hit[0], x, hit[1])
        return True

    if int(np.argmax(net(x0.reshape(net.input_shape)))) != int(label):
        return AttackResult("pgd", 0.0, x0, int(label),
                            int(np.argmax(net(x0.reshape(net.input_shape)))), 0)
    lo, hi = 0.0, float(start) if start and start > 0 else 1e-3 * max(1.0, np.linalg.norm(x0))
    for _ in range(max_doublings):
        if attempt(hi):
            break
        lo, hi = hi, 2 * hi
    else:
        return AttackResult("pgd", math.inf, None, int(label), None, evaluations)
    for _ in range(max_bisections):
        if hi - lo <= rel_tol * hi:
            break
        mid = 0.5 * (lo + hi)
        if attempt(mid):
            hi = min(mid, best[0])
        else:
            lo = mid
    radius, x, cls = best
    return AttackResult("pgd", radius, x, int(label), cls, evaluations)


def fgsm_l2(net: Network, center: Any, label: int, *, device: Any = None,
            max_radius: float | None = None, bisections: int = 40) -> AttackResult:
    """The fast gradient method in l2: the smallest t (to ~1e-12 relative) with x0 + t g /
    ||g|| misclassified, g the gradient of the margin loss at x0; t grows geometrically up to
    `max_radius` (default 1e3 (1 + ||x0||)) and is then bisected."""
    module, x0t, label = _setup(net, center, label, device)
    x0 = x0t.cpu().numpy()
    x = x0t[None].clone().requires_grad_(True)
    loss = margin_loss(_forward(net, module, x), label)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    loss = loss.detach()
    g = grad[0].cpu().numpy()
    gn = float(np.linalg.norm(g))
    evaluations = 1
    if gn == 0 or not math.isfinite(gn):
        return AttackResult("fgsm", math.inf, None, label, None, evaluations)
    direction = g / gn
    limit = max_radius if max_radius is not None else 1e3 * (1 + float(np.linalg.norm(x0)))
    t, lo, found = max(-float(loss[0]) / gn, 1e-12), 0.0, None
    while t <= limit:
        evaluations += 1
        hit = _verified(net, x0, x0 + t * direction, label)
        if hit is not None:
            found = (t, hit)
            break
        lo, t = t, 2 * t
    if found is None:
        return AttackResult("fgsm", math.inf, None, label, None, evaluations)
    hi, best = found
    for _ in range(bisections):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        evaluations += 1
        hit = _verified(net, x0, x0 + mid * direction, label)
        if hit is None:
            lo = mid
        else:
            hi, best = mid, hit
    return AttackResult("fgsm", best[0], x0 + hi * direction, label, best[1], evaluations)
