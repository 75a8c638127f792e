"""Regularisers for training under a Lipschitz budget: penalties, constraints and designs.

Each entry of `REGULARISERS` says what its one strength means and where it is allowed:

* `none`; `weight-decay` (lambda sum ||W||_F^2 added to the loss);
* `clipping` (Arjovsky, Chintala & Bottou, ICML 2017: every weight entry clipped to
  [-c, c] after each step, c the strength);
* `spectral` (Miyato et al., ICLR 2018), `projection-l2`, `projection-linf`,
  `projection-l1` (Gouk et al., Machine Learning 2021, harness/train.py's projections) and
  `bjorck` (orthonormal layers with MaxMin, Anil, Lucas & Grosse, ICML 2019,
  harness/lipnets.py): the strength is the budget K, and the exported network satisfies
  L_p <= K by construction (each of L layers at norm <= K^(1/L), or normalised layers and
  the output scaled by K);
* `gradient-penalty` (Gulrajani et al., NeurIPS 2017): lambda E (||J(x)||_F - K)^2 at
  random interpolates of training pairs (||J||_F is the gradient norm for one output);
* `lipschitz-penalty` (Petzka, Fischer & Lukovnikov, ICLR 2018, on pairs):
  lambda E max(0, ||f(x) - f(y)|| / ||x - y|| - K)^2 over pairs of training points and
  pairs of nearby points;
* `adversarial-lipschitz` (Terjék, ICLR 2020): the direction r_adv that most increases
  ||f(x + r) - f(x)||, found by power iteration with Hessian-vector products of
  d(r) = ||f(x + r) - f(x)||^2 at r = 0 (whose Hessian there is 2 J^T J), then a step of
  random length along it, and the one-sided penalty of the ratio at that pair.

The penalties take explicit points so their values can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InputError


@dataclass(frozen=True)
class Regulariser:
    """One regulariser: what its strength means, its allowed range, how it acts."""

    name: str
    kind: str  # "none", "penalty" (added to the loss), "step" (after each step), "design"
    strength: str  # what the strength is
    low: float  # strengths must lie in (low, high] (none: exactly 0)
    high: float
    default: float
    reference: str
    mlp_only: bool = False  # constraints on operator norms: dense layers only
    norm: str = "2"  # the norm in which a design bound holds

    def check(self, strength: float) -> float:
        if isinstance(strength, bool) or not isinstance(strength, int | float) \
                or not math.isfinite(strength):
            raise InputError(f"strength must be a finite number, got {strength!r}")
        if self.kind == "none":
            if strength != 0:
                raise InputError(f"regulariser none takes strength 0, got {strength:g}")
            return 0.0
        if not self.low < strength <= self.high:
            raise InputError(f"strength of {self.name} ({self.strength}) must lie in "
                             f"({self.low:g}, {self.high:g}], got {strength:g}")
        return float(strength)


BUDGET = "the Lipschitz budget K"
LAMBDA = "the penalty weight lambda"
MAX_BUDGET = 1e6
REGULARISERS: dict[str, Regulariser] = {r.name: r for r in (
    Regulariser("none", "none", "none (0)", 0.0, 0.0, 0.0, "plain training"),
    Regulariser("weight-decay", "penalty", LAMBDA, 0.0, 10.0, 1e-3,
                "Krogh & Hertz, NeurIPS 1991"),
    Regulariser("clipping", "step", "the clip value c", 0.0, 10.0, 0.1,
                "Arjovsky, Chintala & Bottou, ICML 2017"),
    Regulariser("spectral", "design", BUDGET, 0.0, MAX_BUDGET, 1.0,
                "Miyato et al., ICLR 2018", mlp_only=True),
    Regulariser("projection-l2", "step", BUDGET, 0.0, MAX_BUDGET, 1.0,
                "Gouk et al., Machine Learning 2021", mlp_only=True),
    Regulariser("projection-linf", "step", BUDGET, 0.0, MAX_BUDGET, 1.0,
                "Gouk et al., Machine Learning 2021", mlp_only=True, norm="inf"),
    Regulariser("projection-l1", "step", BUDGET, 0.0, MAX_BUDGET, 1.0,
                "Gouk et al., Machine Learning 2021", mlp_only=True, norm="1"),
    Regulariser("bjorck", "design", BUDGET, 0.0, MAX_BUDGET, 1.0,
                "Anil, Lucas & Grosse, ICML 2019", mlp_only=True),
    Regulariser("gradient-penalty", "penalty", LAMBDA, 0.0, 1e3, 1.0,
                "Gulrajani et al., NeurIPS 2017"),
    Regulariser("lipschitz-penalty", "penalty", LAMBDA, 0.0, 1e3, 1.0,
                "Petzka, Fischer & Lukovnikov, ICLR 2018"),
    Regulariser("adversarial-lipschitz", "penalty", LAMBDA, 0.0, 1e3, 1.0,
                "Terjék, ICLR 2020"),
)}
# regularisers whose exported network carries a guaranteed bound (the budget)
DESIGNED = tuple(n for n, r in REGULARISERS.items()
                 if r.strength == BUDGET)


def get_regulariser(name: str) -> Regulariser:
    if name not in REGULARISERS:
        raise InputError(f"unknown regulariser {name!r}: use one of {', '.join(REGULARISERS)}")
    return REGULARISERS[name]


# ---------------------------------------------------------------------------- penalties
def jacobian_norms(model: Any, x: Any, *, create_graph: bool = True) -> Any:
    """||J(x_i)||_F for each row x_i (the gradient norm for one output), differentiable."""
    import torch

    x = x.detach().requires_grad_(True)
    y = model(x)
    y = y.reshape(len(x), -1)
    sq = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for k in range(y.shape[1]):
        (g,) = torch.autograd.grad(y[:, k].sum(), x, create_graph=create_graph,
                                   retain_graph=True)
        sq = sq + g.reshape(len(x), -1).pow(2).sum(1)
    return sq.clamp_min(1e-300).sqrt()


def gradient_penalty(model: Any, x: Any, target: float = 1.0) -> tuple[Any, Any]:
    """Gulrajani et al.'s two-sided penalty mean_i (||J(x_i)||_F - target)^2 at the given
    points, and the norms (detached)."""
    norms = jacobian_norms(model, x)
    return (norms - target).pow(2).mean(), norms.detach()


def secant_ratios(model: Any, x: Any, y: Any) -> Any:
    """||f(x_i) - f(y_i)||_2 / ||x_i - y_i||_2 for each pair of rows (differentiable)."""
    num = (model(x) - model(y)).reshape(len(x), -1).norm(dim=1)
    den = (x - y).reshape(len(x), -1).norm(dim=1).clamp_min(1e-300)
    return num / den


def lipschitz_penalty(model: Any, x: Any, y: Any, target: float = 1.0) -> tuple[Any, Any]:
    """Petzka et al.'s one-sided penalty on pairs, mean_i max(0, ratio_i - target)^2, and the
    secant ratios (detached)."""
    ratio = secant_ratios(model, x, y)
    return (ratio - target).clamp_min(0).pow(2).mean(), ratio.detach()


def interpolates(x: Any, generator: Any) -> Any:
    """t x_i + (1 - t) x_pi(i) for a random permutation pi and t ~ U(0, 1) per row."""
    import torch

    n = len(x)
    perm = torch.randperm(n, generator=generator).to(x.device)
    t = torch.rand(n, 1, generator=generator, dtype=x.dtype).to(x.device)
    return t * x + (1 - t) * x[perm]


def pairs(x: Any, generator: Any, radius: float = 1.0) -> tuple[Any, Any]:
    """Pairs for the Lipschitz penalty: each row with another row of the batch, and each
    row with a point at a random distance in (0, radius] in a random direction."""
    import torch

    n = len(x)
    perm = torch.randperm(n, generator=generator).to(x.device)
    u = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    u = u / u.reshape(n, -1).norm(dim=1).clamp_min(1e-300).reshape(-1, *[1] * (x.dim() - 1))
    r = radius * (1 - torch.rand(n, generator=generator, dtype=x.dtype)).to(x.device)
    near = x + r.reshape(-1, *[1] * (x.dim() - 1)) * u
    keep = (x - x[perm]).reshape(n, -1).norm(dim=1) > 0  # identical rows carry no ratio
    return torch.cat([x[keep], x]), torch.cat([x[perm][keep], near])


def _unit_rows(d: Any) -> Any:
    n = len(d)
    return d / d.reshape(n, -1).norm(dim=1).clamp_min(1e-300).reshape(-1, *[1] * (d.dim() - 1))


def alp_direction(model: Any, x: Any, *, iterations: int = 1, xi: float = 1e-6,
                  hvp: str = "difference", generator: Any = None) -> Any:
    """Terjék's r_adv for each row: `iterations` steps of the power method on the Hessian
    H = 2 J^T J of d(r) = ||f(x + r) - f(x)||^2 at r = 0, from a random start; unit rows.

    hvp "difference": H v ~ grad d(xi v) / xi (one backward pass, as virtual adversarial
    training); "autograd": H v exactly, by double backward through grad d at r = 0.
    """
    import torch

    if hvp not in ("difference", "autograd"):
        raise InputError(f"unknown Hessian-vector product {hvp!r}: use difference or autograd")
    with torch.no_grad():
        fx = model(x)
    d = _unit_rows(torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device))
    for _ in range(iterations):
        if hvp == "difference":
            v = (xi * d).requires_grad_(True)
            dist = (model(x + v) - fx).pow(2).sum()
            (g,) = torch.autograd.grad(dist, v)
        else:
            r = torch.zeros_like(x, requires_grad=True)
            dist = (model(x + r) - fx).pow(2).sum()
            (grad_r,) = torch.autograd.grad(dist, r, create_graph=True)
            (g,) = torch.autograd.grad((grad_r * d).sum(), r)
        d = _unit_rows(g.detach())
    return d


def adversarial_lipschitz_penalty(model: Any, x: Any, direction: Any, lengths: Any,
                                  target: float = 1.0) -> tuple[Any, Any]:
    """The one-sided penalty mean_i max(0, ||f(x_i + r_i) - f(x_i)|| / ||r_i|| - target)^2
    with r_i = lengths_i * direction_i, and the ratios (detached)."""
    r = lengths.reshape(-1, *[1] * (x.dim() - 1)) * direction
    return lipschitz_penalty(model, x + r, x, target)


def weight_decay(model: Any) -> Any:
    """sum ||W||_F^2 over the weight matrices and kernels (biases left out)."""
    return sum(p.pow(2).sum() for name, p in model.named_parameters() if _is_weight(name, p))


def _is_weight(name: str, p: Any) -> bool:
    return p.dim() >= 2 and not name.endswith("bias")


def clip_weights(model: Any, c: float) -> None:
    """Clip every weight entry to [-c, c] in place (call under torch.no_grad())."""
    for name, p in model.named_parameters():
        if _is_weight(name, p):
            p.clamp_(-c, c)
