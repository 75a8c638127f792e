"""Lower bounds: the Lipschitz constant is at least any secant ratio it admits.

Every method here searches for points where the Jacobian norm ||J(x)||_{p->p} is large
(at data points, random points, by gradient ascent, simulated annealing or a grid), then
turns the best point into a *witness pair* (x, y = x + h v) along the direction v that
realises ||J(x)||, and reports the secant ratio ||f(y) - f(x)||_p / ||y - x||_p computed
in float64. A secant ratio is a lower bound on the constant by definition, so the value
needs no trust in autograd at kinks; for a ReLU net and small h it equals ||J(x)||.

Domains: with no domain the search is global (over a search box, see `search_box`); with a
ball or box both witness points stay in the set (a lower bound on the local constant over
the set); with an anchored ball the witnesses are secants from the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..bound import Bound, Domain
from ..errors import InputError, UnsupportedError
from ..network import Network
from ..numerics.spectral import as_tensor
from ..registry import method

# Relative safety margin on top of the rigorous floating-point error term of a secant.
SECANT_MARGIN = 1e-12
# Step lengths tried for the witness pair, relative to max(1, ||x||).
SECANT_STEPS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
# Elements of a Jacobian batch held at once (B * m * n).
JACOBIAN_BATCH_ELEMENTS = 20_000_000
# unit roundoff of float64
UNIT = float(np.finfo(np.float64).eps) / 2
# the absolute forward pass's error bound is used alone below this fraction of the output's
# norm (secants then lose at most this much); above it the running error analysis is tried
RUNNING_ERROR_THRESHOLD = 1e-9
# an upper bound on softplus(0) = ln 2 (0.693147...), for the absolute forward pass
ABS_SOFTPLUS_AT_0 = 0.6931471805599454
# The same for the numpy Jacobians behind search scores (32 MB blocks).
SCORE_BATCH_ELEMENTS = 4_000_000


# ------------------------------------------------------------------------ Jacobians
def _module(net: Network, device: Any = None):
    return net.to_torch(device=device, dtype=torch.float64)


def batch_jacobians(net: Network, X: torch.Tensor | np.ndarray, *, device: Any = None
                    ) -> torch.Tensor:
    """Jacobians (B, m, n) of the flattened network at the rows of X (B, n), float64."""
    module = _module(net, device)
    X = as_tensor(X, device=device).reshape(-1, net.input_dim)
    m, n = net.output_dim, net.input_dim
    in_shape = net.input_shape

    def f(x: torch.Tensor) -> torch.Tensor:
        return module(x.reshape(1, *in_shape)).reshape(-1)

    jac = torch.func.jacrev(f) if m <= n else torch.func.jacfwd(f)
    vjac = torch.func.vmap(jac)
    step = max(1, JACOBIAN_BATCH_ELEMENTS // max(m * n, 1))
    outs = [vjac(X[i:i + step]) for i in range(0, X.shape[0], step)]
    return torch.cat(outs) if outs else torch.zeros((0, m, n), dtype=torch.float64)


def jacobian_norms(J: torch.Tensor, norm: str) -> torch.Tensor:
    """||J_b||_{p->p} for a batch (B, m, n)."""
    if norm == "inf":
        return J.abs().sum(-1).amax(-1)
    if norm == "1":
        return J.abs().sum(-2).amax(-1)
    if min(J.shape[-2:]) == 1:
        return torch.linalg.vector_norm(J, dim=(-2, -1))
    return torch.linalg.matrix_norm(J, ord=2)


def best_direction(J: torch.Tensor, norm: str) -> torch.Tensor:
    """A direction v with ||v||_p = 1 and ||J v||_p = ||J||_{p->p} for one Jacobian (m, n)."""
    if norm == "inf":
        row = int(J.abs().sum(-1).argmax())
        v = torch.sign(J[row])
        return torch.where(v == 0, torch.ones_like(v), v)
    if norm == "1":
        col = int(J.abs().sum(0).argmax())
        v = torch.zeros(J.shape[1], dtype=J.dtype, device=J.device)
        v[col] = 1.0
        return v
    return torch.linalg.svd(J, full_matrices=False)[2][0]


def vector_norm(x: np.ndarray, norm: str, axis: int = -1) -> np.ndarray:
    order = {"2": 2, "inf": np.inf, "1": 1}[norm]
    return np.linalg.norm(x, ord=order, axis=axis)


def _abs_weights(net: Network) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """|W|, |b| of every affine node as float64 tensors (memoised on the network)."""
    def compute() -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for node in net.as_nodes():
            W = getattr(node.op, "W", getattr(node.op, "weight", None))
            b = getattr(node.op, "b", getattr(node.op, "bias", None))
            out.append(None if W is None else (as_tensor(np.abs(W)), as_tensor(np.abs(b))))
        return out

    return net.memo(__name__, "abs_weights", compute)


def eval_error_bound(net: Network, X: np.ndarray) -> np.ndarray:
    """A bound (B, m) on |fl(f(x)) - f(x)| for float64 evaluation at the rows of X.

    A product W h computed in any summation order errs by at most gamma_n |W| |h|
    (Higham, Accuracy and Stability of Numerical Algorithms, 3.5); propagated through the
    later layers every such error stays below the absolute forward pass m = |W_K| ... |x|
    (with |b| added, and for an elementwise s: |s(z)| <= |s(0)| + Lip(s) |z|, e.g.
    |sigmoid(z)| <= 1/2 + |z|/4, which also dominates the propagated errors), so the total
    error is at most sum_k gamma_{n_k + 4} times m, inflated twofold for safety. On a graph
    the absolute pass follows the nodes (a sum adds sum_i |c_i| m_i + |c|), so every path
    from a node to the output is covered.
    """
    import torch.nn.functional as F

    from ..network import (
        Activation,
        Add,
        Affine,
        AvgPool2d,
        BatchNorm,
        Concat,
        Conv2d,
        Flatten,
        GroupSort,
        MaxPool2d,
        op_name,
    )

    values = [torch.as_tensor(np.abs(np.asarray(X, np.float64))).reshape(-1, *net.input_shape)]
    terms = 0.0
    absolute = _abs_weights(net)
    for k, node in enumerate(net.as_nodes()):
        layer = node.op
        m = values[node.inputs[0]]
        if isinstance(layer, Affine):
            m = m @ absolute[k][0].T + absolute[k][1]
            terms += layer.W.shape[1] + 4
        elif isinstance(layer, Conv2d):
            m = F.conv2d(m, absolute[k][0], absolute[k][1], stride=layer.stride,
                         padding=layer.padding)
            terms += int(np.prod(layer.weight.shape[1:])) + 4
        elif isinstance(layer, Activation):
            if layer.name == "sigmoid":
                m = 0.5 + m / 4
            elif layer.name == "softplus":
                m = ABS_SOFTPLUS_AT_0 + m
            elif layer.name == "cos":
                m = 1.0 + m
            elif layer.name == "leaky_relu":
                m = max(1.0, abs(layer.negative_slope)) * m
            terms += 8  # elementary function error, a few ulps
        elif isinstance(layer, MaxPool2d):
            m = F.max_pool2d(m, layer.kernel, layer.stride, layer.padding)
        elif isinstance(layer, AvgPool2d):
            m = F.avg_pool2d(m, layer.kernel, layer.stride)
            terms += int(np.prod(layer.kernel)) + 4
        elif isinstance(layer, Flatten):
            m = m.flatten(1)
        elif isinstance(layer, Add):
            m = sum(abs(c) * values[i] for c, i in zip(layer.coeffs, node.inputs))
            m = m + abs(layer.offset)
            terms += 2 * len(node.inputs) + 2
        elif isinstance(layer, Concat):
            m = torch.cat([values[i] for i in node.inputs], dim=layer.axis + 1)
        elif isinstance(layer, BatchNorm):
            view = (-1,) + (1,) * (m.dim() - 2)
            m = (m * as_tensor(np.abs(layer.scale)).reshape(view)
                 + as_tensor(np.abs(layer.shift)).reshape(view))
            terms += 4
        elif isinstance(layer, GroupSort):
            g = layer.group_size
            grouped = m.reshape(m.shape[0], m.shape[1] // g, g, *m.shape[2:])
            m = grouped.amax(dim=2, keepdim=True).expand_as(grouped).reshape(m.shape)
        else:  # an operation without a rule here would add no error: refuse it instead
            raise UnsupportedError(f"no floating-point error rule for {op_name(layer)}")
        values.append(m)
    m = values[-1]
    u = np.finfo(np.float64).eps / 2
    return 2.0 * terms * u * m.reshape(m.shape[0], -1).numpy()


def error_norms(net: Network, X: np.ndarray, norm: str, fx: np.ndarray | None = None
                ) -> np.ndarray:
    """A bound (B,) on ||fl(f(x)) - f(x)||_p: the smaller of the absolute forward pass
    (`eval_error_bound`, tight on small networks) and the running error analysis
    (`running_error_norms`, tight on deep ones; tried when the first one is not small
    against the output `fx`, computed when not given)."""
    err = vector_norm(eval_error_bound(net, X), norm)
    if fx is None:
        fx = net(np.asarray(X, np.float64).reshape(-1, *net.input_shape))
    fx = fx.reshape(len(err), -1)
    if np.all(err <= RUNNING_ERROR_THRESHOLD * (1 + vector_norm(fx, norm))):
        return err
    return np.minimum(err, running_error_norms(net, X, norm))


def running_error_norms(net: Network, X: np.ndarray, norm: str) -> np.ndarray:
    """A bound (B,) on ||fl(f(x)) - f(x)||_p for float64 evaluation at the rows of X, from
    the computed values (a running error analysis, Higham 2002, 3.3).

    Node k's own rounding is at most delta_k = gamma_{n+2} (|W| |h| + |b|) for an affine map
    of the computed input h (a few ulps of |s(z)| for an elementwise function, nothing for
    max pooling, flattening, concatenation and sorting), and an error E_i in its inputs
    reaches its output at most multiplied by its certified Lipschitz factor (AutoLip's node
    factors, core/autolip.py), so E_k <= factor_k E_in + ||delta_k||_p along Algorithm 2's
    recursion. Unlike the absolute forward pass this does not grow like |W_K| ... |W_1| on
    deep networks. Inflated twofold for the rounding of the bound itself.
    """
    import torch.nn.functional as F

    from ..network import (
        Activation,
        Add,
        Affine,
        AvgPool2d,
        BatchNorm,
        Concat,
        Conv2d,
        Flatten,
        GroupSort,
        MaxPool2d,
        op_name,
    )
    from ..numerics.rounding import gamma
    from .autolip import node_factors

    nodes = net.as_nodes()
    factors = node_factors(net, norm, power_method=False)
    absolute = _abs_weights(net)
    module = _module(net)
    ops = list(module.ops) if net.is_graph else list(module)
    x = torch.as_tensor(np.asarray(X, np.float64)).reshape(-1, *net.input_shape)
    values = [x]
    errors = [np.zeros(len(x))]
    with torch.no_grad():
        for k, node in enumerate(nodes, start=1):
            ins = [values[i] for i in node.inputs]
            out = ops[k - 1](*ins)
            op = node.op
            if isinstance(op, Affine):
                delta = gamma(op.W.shape[1] + 2) * (ins[0].abs() @ absolute[k - 1][0].T
                                                    + absolute[k - 1][1])
            elif isinstance(op, Conv2d):
                delta = gamma(int(np.prod(op.weight.shape[1:])) + 2) * F.conv2d(
                    ins[0].abs(), absolute[k - 1][0], absolute[k - 1][1], stride=op.stride,
                    padding=op.padding)
            elif isinstance(op, Activation):
                delta = None if op.name == "relu" else 8 * UNIT * out.abs()
            elif isinstance(op, AvgPool2d):
                delta = gamma(int(np.prod(op.kernel)) + 1) * F.avg_pool2d(
                    ins[0].abs(), op.kernel, op.stride)
            elif isinstance(op, BatchNorm):
                view = (-1,) + (1,) * (ins[0].dim() - 2)
                delta = gamma(2) * (ins[0].abs() * as_tensor(np.abs(op.scale)).reshape(view)
                                    + as_tensor(np.abs(op.shift)).reshape(view))
            elif isinstance(op, Add):
                delta = gamma(2 * len(ins) + 1) * (
                    sum(abs(c) * h.abs() for c, h in zip(op.coeffs, ins)) + abs(op.offset))
            elif isinstance(op, MaxPool2d | Flatten | Concat | GroupSort):
                delta = None  # selections and reshapes: exact
            else:  # an operation without a rule here would add no error: refuse it instead
                raise UnsupportedError(f"no floating-point error rule for {op_name(op)}")
            local = (np.zeros(len(x)) if delta is None else
                     vector_norm(delta.reshape(len(x), -1).numpy(), norm) * (1 + 1e-6))
            nb = factors[k - 1]
            if nb is None:
                ins_err = [errors[i] for i in node.inputs]
                if isinstance(op, Add):
                    prop = sum(abs(c) * e for c, e in zip(op.coeffs, ins_err))
                elif norm == "inf":
                    prop = np.max(ins_err, axis=0)
                elif norm == "1":
                    prop = np.sum(ins_err, axis=0)
                else:
                    prop = np.sqrt(np.sum(np.square(ins_err), axis=0))
            else:
                prop = nb.upper * errors[node.inputs[0]]
            errors.append((prop + local) * (1 + 8 * UNIT))
            values.append(out)
    return 2.0 * errors[-1]


def secant_ratios(net: Network, X: np.ndarray, Y: np.ndarray, norm: str, *,
                  certified: bool = False) -> np.ndarray:
    """||f(x) - f(y)||_p / ||x - y||_p for rows of X and Y, in float64.

    With certified=True the numerator is first reduced by the evaluation error bound of
    f(x) and f(y) (`eval_error_bound`), so each value is a proven lower bound on the ratio.
    """
    X = np.asarray(X, np.float64).reshape(-1, net.input_dim)
    Y = np.asarray(Y, np.float64).reshape(-1, net.input_dim)
    fx = net(X.reshape(-1, *net.input_shape)).reshape(len(X), -1)
    fy = net(Y.reshape(-1, *net.input_shape)).reshape(len(Y), -1)
    num = vector_norm(fx - fy, norm)
    if certified:
        err = error_norms(net, X, norm, fx) + error_norms(net, Y, norm, fy)
        num = np.maximum(num - err, 0.0) * (1 - SECANT_MARGIN)
    den = vector_norm(X - Y, norm)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, 0.0)


# ------------------------------------------------------------ piecewise-linear MLPs
@dataclass(frozen=True)
class PiecewiseLinearMLP:
    """A ReLU / leaky-ReLU MLP as float64 arrays, for work on activation patterns.

    f(x) = W_{K-1} rho_{K-2}(... rho_0(W_0 x + b_0) ...) + b_{K-1} with rho_k(z) = z for
    z > 0 and negative[k] * z otherwise. A pattern is one boolean array (z > 0) per hidden
    layer; on the region where it holds, f is affine with the Jacobian `jacobians` gives.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    negative: tuple[float, ...]

    @property
    def input_dim(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def output_dim(self) -> int:
        return int(self.weights[-1].shape[0])

    def slopes(self, pattern: list[np.ndarray]) -> list[np.ndarray]:
        return [np.where(on, 1.0, a) for on, a in zip(pattern, self.negative)]

    def patterns(self, X: np.ndarray, *, bias: bool = True) -> list[np.ndarray]:
        """The pattern at each row of X (B, n); with bias=False the bias-free network's."""
        h = np.asarray(X, np.float64).reshape(-1, self.input_dim)
        out = []
        for W, b, a in zip(self.weights[:-1], self.biases[:-1], self.negative):
            z = h @ W.T + (b if bias else 0.0)
            on = z > 0
            out.append(on)
            h = np.where(on, z, a * z)
        return out

    def jacobians(self, pattern: list[np.ndarray], rows: int | None = None) -> np.ndarray:
        """The Jacobians (B, m, n) of the regions of a batch of patterns."""
        B = pattern[0].shape[0] if pattern else int(rows or 1)
        slopes = self.slopes(pattern)
        m, n = self.output_dim, self.input_dim
        widest = max([W.shape[0] for W in self.weights] + [n])
        step = max(1, JACOBIAN_BATCH_ELEMENTS // (min(m, n) * widest))
        out = np.empty((B, m, n))
        for i in range(0, B, step):
            sl = [s[i:i + step] for s in slopes]
            if m <= n:  # reverse mode: (B, m, width) blocks
                G = np.broadcast_to(self.weights[-1], (min(step, B - i), m,
                                                       self.weights[-1].shape[1]))
                for k in range(len(sl) - 1, -1, -1):
                    G = (G * sl[k][:, None, :]) @ self.weights[k]
            else:  # forward mode: (B, width, n) blocks
                G = np.broadcast_to(self.weights[0], (min(step, B - i), *self.weights[0].shape))
                for k in range(len(sl)):
                    G = self.weights[k + 1] @ (sl[k][:, :, None] * G)
            out[i:i + step] = G
        return out

    def jacobian_norms(self, X: np.ndarray, norm: str) -> np.ndarray:
        """||J(x)||_{p->p} at the rows of X, a block of rows at a time (the l2 norm from the
        smaller Gram matrix: a search score, not a certificate)."""
        X = np.asarray(X, np.float64).reshape(-1, self.input_dim)
        step = max(1, SCORE_BATCH_ELEMENTS // (self.output_dim * self.input_dim))
        out = np.empty(len(X))
        for i in range(0, len(X), step):
            J = self.jacobians(self.patterns(X[i:i + step]), rows=len(X[i:i + step]))
            out[i:i + step] = search_norms(J, norm)
        return out


def pl_mlp(net: Network) -> PiecewiseLinearMLP | None:
    """The network as a PiecewiseLinearMLP, or None if it is not a ReLU/leaky-ReLU MLP
    (memoised on the network)."""
    def build() -> PiecewiseLinearMLP | None:
        if not (net.is_piecewise_linear and net.is_mlp):
            return None
        ws, bs, acts = net.mlp()
        return PiecewiseLinearMLP(
            tuple(np.asarray(W, np.float64) for W in ws),
            tuple(np.asarray(b, np.float64) for b in bs),
            tuple(float(a.negative_slope) if a.name == "leaky_relu" else 0.0 for a in acts))

    return net.memo(__name__, "pl_mlp", build)


def matrix_norms(J: np.ndarray, norm: str) -> np.ndarray:
    """||J_b||_{p->p} for a numpy batch (B, m, n) (the numpy twin of `jacobian_norms`)."""
    if norm == "inf":
        return np.abs(J).sum(-1).max(-1)
    if norm == "1":
        return np.abs(J).sum(-2).max(-1)
    if min(J.shape[-2:]) == 1:
        return np.sqrt((J * J).sum((-2, -1)))
    return np.linalg.norm(J, ord=2, axis=(-2, -1))


def search_norms(J: np.ndarray, norm: str) -> np.ndarray:
    """`matrix_norms` with the l2 norm from the top eigenvalue of the smaller Gram matrix
    (much faster than SVDs of wide Jacobians; for ranking candidates, not for certificates)."""
    if norm != "2" or min(J.shape[-2:]) == 1:
        return matrix_norms(J, norm)
    G = J @ J.transpose(0, 2, 1) if J.shape[1] <= J.shape[2] else J.transpose(0, 2, 1) @ J
    return np.sqrt(np.maximum(np.linalg.eigvalsh(G)[:, -1], 0.0))


# ------------------------------------------------------------ scales and cones at infinity
# Smallest scale searched, relative to the search box (log-uniform radii start here).
INNER_SCALE = 1e-3
# The search reaches FAR_MARGIN times the radius beyond which FAR_QUANTILE of the directions
# have their pattern at infinity, the bias-free network's (see `far_radii`; estimated on
# FAR_DIRECTIONS fixed random directions).
FAR_QUANTILE = 0.95
FAR_MARGIN = 2.0
FAR_DIRECTIONS = 1024
# A cone direction u is pulled back to c + CONE_PULLBACK * R(u) u, R(u) the radius beyond
# which the ray has its pattern at infinity: well inside the cone's region, not on its edge.
CONE_PULLBACK = 4.0
# Radii beyond this (relative to 1 + |centre|) are not used: float64 secants there lose
# their digits to the evaluation error of f.
MAX_FAR_SCALE = 1e12
# Networks that are not piecewise-linear MLPs have no cone analysis: search this many box
# half-widths out (a heuristic; saturating activations are flat far out).
NON_PL_FAR_SCALE = 100.0


def far_radii(mlp: PiecewiseLinearMLP, center: np.ndarray, U: np.ndarray) -> np.ndarray:
    """For each unit direction u (rows of U) the radius R(u) beyond which every point
    c + r u (r > R(u)) has the activation pattern of the ray at infinity.

    That pattern is the bias-free network's at u: each pre-activation along the ray is,
    with the pattern fixed, affine in r, r z0(u) + zb, z0 the bias-free pre-activation and
    zb the biases (and the centre) carried through the same pattern; a unit is on at
    infinity when z0 > 0 (or z0 = 0 and zb > 0: units that the bias-free network leaves at
    exactly zero, such as a unit with no incoming weights, follow their bias). The pattern
    is consistent exactly when every unit with z0 != 0 keeps the sign of z0,
    r |z0| > -sign(z0) zb, and the largest such threshold is R(u): tight, since below it
    the ray's pattern differs.
    """
    U = np.asarray(U, np.float64)
    h0 = U
    hb = np.broadcast_to(np.asarray(center, np.float64).ravel(), U.shape)
    R = np.zeros(len(U))
    for W, b, a in zip(mlp.weights[:-1], mlp.biases[:-1], mlp.negative):
        z0 = h0 @ W.T
        zb = hb @ W.T + b
        on = (z0 > 0) | ((z0 == 0) & (zb > 0))
        need = np.where(z0 != 0, np.maximum(np.where(on, -zb, zb), 0.0), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(need > 0, need / np.abs(z0), 0.0)
        R = np.maximum(R, ratio.max(1) if ratio.size else 0.0)
        slope = np.where(on, 1.0, a)
        h0, hb = slope * z0, slope * zb
    return R


def limit_patterns(mlp: PiecewiseLinearMLP, center: np.ndarray, U: np.ndarray
                   ) -> list[np.ndarray]:
    """The pattern of each ray c + r u at infinity (see `far_radii`)."""
    h0 = np.asarray(U, np.float64)
    hb = np.broadcast_to(np.asarray(center, np.float64).ravel(), h0.shape)
    out = []
    for W, b, a in zip(mlp.weights[:-1], mlp.biases[:-1], mlp.negative):
        z0, zb = h0 @ W.T, hb @ W.T + b
        on = (z0 > 0) | ((z0 == 0) & (zb > 0))
        out.append(on)
        slope = np.where(on, 1.0, a)
        h0, hb = slope * z0, slope * zb
    return out


def _unit_directions(count: int, n: int, rng: np.random.Generator) -> np.ndarray:
    U = rng.standard_normal((count, n))
    return U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-300)


def far_scale(net: Network, space: SearchSpace) -> float:
    """How many box half-widths out a global search reaches: FAR_MARGIN times the radius
    around the box centre beyond which FAR_QUANTILE of the directions have the bias-free
    pattern (see `far_radii`), at least 1. Fixed directions: a property of the network."""
    mlp = pl_mlp(net)
    if mlp is None:
        return NON_PL_FAR_SCALE
    c = space.center

    def compute() -> float:
        U = _unit_directions(FAR_DIRECTIONS, mlp.input_dim, np.random.default_rng(0))
        R = far_radii(mlp, c, U)
        R = R[np.isfinite(R)]
        outer = FAR_MARGIN * float(np.quantile(R, FAR_QUANTILE)) if R.size else 0.0
        limit = MAX_FAR_SCALE * (1.0 + float(np.abs(c).max())) / space.half
        return max(1.0, min(outer / space.half, limit))

    return net.memo(__name__, ("far_scale", c.tobytes(), space.half), compute)


def cone_points(mlp: PiecewiseLinearMLP, center: np.ndarray, U: np.ndarray, base: float
                ) -> np.ndarray:
    """The bias-free network's cones pulled back: c + CONE_PULLBACK max(R(u), base) u for
    each direction u, where the real network's pattern is the ray's pattern at infinity (so
    its Jacobian is the cone's). Directions whose radius is too large to use are dropped."""
    R = CONE_PULLBACK * np.maximum(far_radii(mlp, center, U), base)
    ok = np.isfinite(R) & (R <= MAX_FAR_SCALE * (1.0 + float(np.abs(center).max())))
    return center + R[ok, None] * U[ok]


# ------------------------------------------------------------------------ domains
@dataclass(frozen=True)
class SearchSpace:
    """Where a lower-bound search looks: a box, optionally intersected with a ball."""

    lower: np.ndarray
    upper: np.ndarray
    domain: Domain | None

    @property
    def center(self) -> np.ndarray:
        if self.domain is not None:
            return self.domain.center.ravel()
        return (self.lower + self.upper) / 2

    @property
    def half(self) -> float:
        """The largest half-width of the box."""
        return float(np.max(self.upper - self.lower)) / 2

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        dim = self.lower.size
        if self.domain is not None and self.domain.kind == "ball":
            d = rng.standard_normal((n, dim))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            r = float(self.domain.radius) * rng.random(n) ** (1.0 / dim)
            return self.domain.center.ravel() + d * r[:, None]
        return self.lower + (self.upper - self.lower) * rng.random((n, dim))

    def project(self, X: np.ndarray) -> np.ndarray:
        if self.domain is not None and self.domain.kind == "ball":
            c, r = self.domain.center.ravel(), float(self.domain.radius)
            d = X - c
            nrm = np.linalg.norm(d, axis=-1, keepdims=True)
            return c + d * np.minimum(1.0, r / np.maximum(nrm, 1e-300))
        if self.domain is None:
            return X
        return np.clip(X, self.lower, self.upper)

    def contains(self, X: np.ndarray) -> np.ndarray:
        if self.domain is None:
            return np.ones(len(X), dtype=bool)
        return self.domain.contains(X)


# A first-layer unit whose weight row is this small against the largest row is dead in
# practice (weight decay leaves rows of 1e-17 beside rows of 1): its kink, |b| / ||w|| away,
# would blow the search box up to 1e16 and leave no point near the data.
DEAD_ROW_RTOL = 1e-8


def search_box(net: Network, *, X: np.ndarray | None = None, radius: float | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """The box a global search starts from (the search reaches beyond it, see
    `search_points`).

    `radius` sets [-radius, radius]^n. Otherwise the box around the data X (10% margin),
    or, with no data, [-R, R]^n with R = max(1, 3 max_i |b_i| / ||w_i||) over the first
    layer's units (so every first-layer kink crosses the box), units with rows below
    DEAD_ROW_RTOL times the largest left out. A heuristic: any box gives
    valid lower bounds; a larger one finds more linear regions.
    """
    n = net.input_dim
    if radius is not None:
        if not radius > 0:
            raise InputError(f"search radius must be positive, got {radius}")
        return -np.full(n, float(radius)), np.full(n, float(radius))
    if X is not None and np.asarray(X).size:
        X = np.asarray(X, np.float64).reshape(-1, n)
        lo, hi = X.min(0), X.max(0)
        pad = 0.1 * np.maximum(hi - lo, 1e-3)
        return lo - pad, hi + pad
    R = 1.0
    # the affine nodes reading the input (a sequential network's first layer)
    for node in net.as_nodes():
        first = node.op
        W = getattr(first, "W", None)
        if W is None or node.inputs != (0,):
            continue
        rows = np.linalg.norm(W, axis=1)
        ok = rows > DEAD_ROW_RTOL * rows.max(initial=0.0)
        if ok.any():
            R = max(R, 3 * float(np.max(np.abs(first.b[ok]) / rows[ok])))
    return -np.full(n, R), np.full(n, R)


def _space(net: Network, domain: Domain | None, X: Any, radius: float | None) -> SearchSpace:
    if domain is None:
        lo, hi = search_box(net, X=X, radius=radius)
        return SearchSpace(lo, hi, None)
    return SearchSpace(domain.lower.ravel(), domain.upper.ravel(), domain)


def search_points(net: Network, space: SearchSpace, samples: int, rng: np.random.Generator,
                  *, multiscale: bool = True, confined: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Search points at every scale, and the scale of each (in box half-widths).

    First `samples` points uniform in the box or domain (the classic search, the same
    points for the same generator state). With `multiscale`, as many again: box points
    pulled towards or pushed away from the centre by a log-uniform factor t, t in
    [INNER_SCALE, 1] inside a domain or a `confined` box (an explicit radius), and for a
    global search t in [INNER_SCALE, far_scale], out to where (almost) every ray has its
    pattern at infinity; for a piecewise-linear MLP half of those are cones of the bias-free
    network pulled back to finite points (`cone_points`). Returns (points, scales).
    """
    samples = int(samples)
    P, scales = [space.sample(samples, rng)], [np.ones(samples)]
    if not multiscale:
        return P[0], scales[0]
    c = space.center
    mlp = pl_mlp(net) if space.domain is None and not confined else None
    top = 1.0 if space.domain is not None or confined else far_scale(net, space)
    n_cone = samples // 2 if mlp is not None else 0
    t = np.exp(rng.uniform(np.log(INNER_SCALE), np.log(top), samples - n_cone))
    P.append(c + t[:, None] * (space.sample(samples - n_cone, rng) - c))
    scales.append(t)
    if n_cone:
        cones = cone_points(mlp, c, _unit_directions(n_cone, mlp.input_dim, rng), space.half)
        P.append(cones)
        scales.append(np.linalg.norm(cones - c, ord=np.inf, axis=1) / space.half)
    return np.concatenate(P), np.concatenate(scales)


# ------------------------------------------------------------------------ witnesses
def witness_pair(net: Network, x: np.ndarray, norm: str, space: SearchSpace, *,
                 inscribed: float | None = None) -> tuple[float, np.ndarray, np.ndarray, float]:
    """Best certified secant (value, a, b, gradient norm) along the top direction v of J(x):
    the pair (x - hv/2, x + hv/2), or for an anchored domain (x, x + hv) with x the centre,
    for steps h relative to max(1, |x|) and, when x is known to be the centre of a ball of
    radius `inscribed` on which f is affine, the longest pair inside that ball."""
    J = batch_jacobians(net, x[None])[0]
    grad_norm = float(jacobian_norms(J[None], norm)[0])
    v = best_direction(J, norm).numpy()
    anchored = space.domain is not None and space.domain.anchored
    scale = max(1.0, float(np.abs(x).max()))
    if not np.any(v):
        return 0.0, x, x, grad_norm
    lengths = [h * scale for h in SECANT_STEPS]
    if inscribed is not None and inscribed > 0:
        lengths.insert(0, INSCRIBED_SHARE * 2 * inscribed / float(np.linalg.norm(v)))
    pairs = []
    for length in lengths:
        step = length * v
        for sign in (1.0, -1.0):
            if anchored:
                a, b = x, x + sign * step
            else:
                a, b = x - 0.5 * sign * step, x + 0.5 * sign * step
            if not bool(space.contains(np.stack([a, b])).all()):
                a, b = x, x + sign * step
                if not bool(space.contains(b[None])[0]):
                    continue
            pairs.append((a, b))
    if not pairs:
        return 0.0, x, x, grad_norm
    # every candidate pair in one batch
    r = secant_ratios(net, np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs]),
                      norm, certified=True)
    k = int(np.argmax(r))
    if not r[k] > 0.0:
        return 0.0, x, x, grad_norm
    return float(r[k]), pairs[k][0], pairs[k][1], grad_norm


# A witness pair inside a ball on which f is affine uses this share of the ball's diameter
# (the rest absorbs the LP's feasibility tolerance).
INSCRIBED_SHARE = 0.9


def certified_lower_bound(name: str, net: Network, norm: str, domain: Domain | None,
                          points: np.ndarray, scores: np.ndarray, space: SearchSpace,
                          extra: dict[str, Any] | None = None, top: int = 5) -> Bound:
    """Certify the `top` best-scoring points by secants and report the best."""
    if len(points) == 0:
        raise InputError(f"{name}: no search point lies in the domain")
    order = np.argsort(-scores)[:top]
    if space.domain is not None and space.domain.anchored:
        # witnesses are secants from the centre: to the best points, and along J(centre)
        c = space.domain.center.ravel()
        ratios = secant_ratios(net, np.repeat(c[None], len(order), 0), points[order], norm,
                               certified=True)
        k = int(np.argmax(ratios))
        best = (float(ratios[k]), c, points[order[k]], 0.0)
        w = witness_pair(net, c, norm, space)
        if w[0] > best[0]:
            best = w
    else:
        best = (0.0, points[order[0]], points[order[0]], 0.0)
        for i in order:
            w = witness_pair(net, points[i], norm, space)
            if w[0] > best[0]:
                best = w
    value, a, b, grad_norm = best
    details = {"witness": {"x": a, "y": b}, "gradient_norm_at_witness": grad_norm,
               "best_search_score": float(scores[order[0]]), "points": int(len(points))}
    details.update(extra or {})
    return Bound(name, "lower", value, norm, certified=True, domain=domain, details=details)


def better(first: Bound, second: Bound, **extra: Any) -> Bound:
    """The larger of two lower bounds of one method, with `extra` added to its details."""
    best = second if second.value > first.value else first
    return best.replace(details={**best.details, **extra})


def _scores(net: Network, P: np.ndarray, norm: str, space: SearchSpace, device: Any = None
            ) -> np.ndarray:
    """Search score of each point: the Jacobian norm, or for an anchored domain the secant
    ratio from the centre (the Jacobian norm in the ball does not bound that constant)."""
    if space.domain is not None and space.domain.anchored:
        c = np.repeat(space.domain.center.reshape(1, -1), len(P), 0)
        return secant_ratios(net, c, P, norm)
    mlp = pl_mlp(net)
    if mlp is not None and (device is None or str(device) == "cpu"):
        return mlp.jacobian_norms(P, norm)
    return jacobian_norms(batch_jacobians(net, P, device=device), norm).cpu().numpy()


def _sampled(name: str, net: Network, norm: str, domain: Domain | None, space: SearchSpace,
             samples: int, rng: np.random.Generator, multiscale: bool, confined: bool,
             device: Any) -> tuple[Bound, np.ndarray, np.ndarray, np.ndarray]:
    """The `random` search (same points for the same seed) as the first stage of another
    method: its bound, the points, their scales and their scores. The classic points and
    the other scales are certified apart, so the bound is never below the classic one."""
    P, t = search_points(net, space, samples, rng, multiscale=multiscale, confined=confined)
    keep = space.contains(P)
    P, t = P[keep], t[keep]
    S = _scores(net, P, norm, space, device)
    extra = {"samples": int(samples), "multiscale": bool(multiscale)}
    box = int(keep[:int(samples)].sum())
    if box == 0:
        return certified_lower_bound(name, net, norm, domain, P, S, space, extra), P, t, S
    b = certified_lower_bound(name, net, norm, domain, P[:box], S[:box], space, extra)
    if len(P) > box:
        far = certified_lower_bound(name, net, norm, domain, P[box:], S[box:], space, extra)
        b = better(b, far, box_value=b.value, scales_value=far.value, points=len(P))
    return b, P, t, S


# ------------------------------------------------------------------------ methods
@method("data", kind="lower", cost="cheap",
        norms=("2", "inf", "1"), needs=("X",), anchored="optional",
        graphs=True, groupsort=True,
        summary="largest Jacobian norm over the data points X")
def data(net: Network, *, norm: str = "2", domain: Domain | None = None, X: Any = None,
         device: Any = None) -> Bound:
    """Max over data points of ||J(x)||, certified by a secant at the best points.

    Reference: the "Data" column of Scaman & Virmaux, NeurIPS 2018 (Table 1).
    Guarantee: certified lower bound with witness pair (x, y).
    """
    P = net.points(X, "data points X")
    space = _space(net, domain, P, None)
    P = P[space.contains(P)]
    return certified_lower_bound("data", net, norm, domain, P,
                                 _scores(net, P, norm, space, device), space)


@method("random", kind="lower", cost="cheap",
        norms=("2", "inf", "1"), anchored="optional", graphs=True,
        groupsort=True,
        summary="largest Jacobian norm (or secant) at random points, at every scale")
def random_points(net: Network, *, norm: str = "2", domain: Domain | None = None,
                  samples: int = 2000, seed: int = 0, multiscale: bool = True,
                  radius: float | None = None, X: Any = None, device: Any = None) -> Bound:
    """Jacobian norms at random points: half uniform in the search box or the domain, half
    at log-uniform scales (globally out to where every pattern is the bias-free network's,
    and on the bias-free network's cones pulled back to finite points); see
    `search_points`. `multiscale=False` samples the box or domain only; an explicit
    `radius` confines a global search to [-radius, radius]^n.

    Guarantee: certified lower bound with witness pair (x, y).
    """
    space = _space(net, domain, X, radius)
    return _sampled("random", net, norm, domain, space, samples, np.random.default_rng(seed),
                    multiscale, radius is not None, device)[0]


@method("gradient-ascent", kind="lower", cost="search",
        norms=("2", "inf", "1"), anchored="optional",
        graphs=True, groupsort=True,
        summary="gradient ascent on secant ratios from the best random points, every scale")
def gradient_ascent(net: Network, *, norm: str = "2", domain: Domain | None = None,
                    restarts: int = 16, steps: int = 300, lr: float = 0.05,
                    samples: int = 2000, seed: int = 0, multiscale: bool = True,
                    radius: float | None = None, X: Any = None, device: Any = None) -> Bound:
    """Adam on pairs of points to maximise ||f(x + d) - f(x - d)||_p / ||2d||_p, with the
    half-length |d| shrinking geometrically (for ReLU nets the Jacobian norm is piecewise
    constant, so its own gradient is zero; a secant across kinks is not). The restarts
    start from the best points of the `random` search with the same `samples` and `seed`
    (and from random ones of it), with steps relative to each start's scale, and the
    result is never below that search's.

    Reference: the optimisation-based lower bounds of Scaman & Virmaux, NeurIPS 2018, and
    the adversarial Lipschitz penalty's pair search (Terjek, ICLR 2020).
    Guarantee: certified lower bound with witness pair (x, y).
    """
    space = _space(net, domain, X, radius)
    rng = np.random.default_rng(seed)
    sampled, P0, t0, S0 = _sampled("gradient-ascent", net, norm, domain, space, samples, rng,
                                   multiscale, radius is not None, device)
    R = int(restarts)
    n_top = (R + 1) // 2
    idx = np.concatenate([np.argsort(-S0)[:n_top],
                          rng.integers(0, len(P0), max(R - n_top, 0))])[:R]
    R = len(idx)
    module = _module(net, device)
    n = net.input_dim
    anchored = domain is not None and domain.anchored
    order = {"2": 2, "inf": float("inf"), "1": 1}[norm]
    lo = as_tensor(space.lower, device=device)
    hi = as_tensor(space.upper, device=device)
    start = torch.tensor(P0[idx], dtype=torch.float64, device=device)
    scale = float(np.max(space.upper - space.lower)) / 4
    if anchored:
        # maximise the secant from the centre: z is the offset of the far point
        c = as_tensor(domain.center.ravel(), device=device)
        z = (start - c).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr * scale)
    else:
        # x = start + s y: steps and secant lengths relative to each start's scale s
        s = torch.tensor(scale * np.maximum(t0[idx], INNER_SCALE), dtype=torch.float64,
                         device=device)[:, None]
        y = torch.zeros_like(start, requires_grad=True)
        d = torch.tensor(rng.standard_normal((R, n)), dtype=torch.float64, device=device,
                         requires_grad=True)
        opt = torch.optim.Adam([{"params": [y], "lr": lr}, {"params": [d], "lr": lr * scale}])
    trail = []
    for k in range(int(steps)):
        if anchored:
            a = c.expand(R, n)
            b = c + _clip_ball(z, float(domain.radius))
        else:
            length = s * (1e-3 ** (k / max(int(steps) - 1, 1)))
            u = d / torch.linalg.vector_norm(d, ord=order, dim=1, keepdim=True).clamp_min(1e-300)
            x = start + s * y
            a, b = x - u * length, x + u * length
            if domain is not None:
                a, b = _project_t(a, space, lo, hi), _project_t(b, space, lo, hi)
        fa = module(a.reshape(-1, *net.input_shape)).flatten(1)
        fb = module(b.reshape(-1, *net.input_shape)).flatten(1)
        num = torch.linalg.vector_norm(fb - fa, ord=order, dim=1)
        den = torch.linalg.vector_norm(b - a, ord=order, dim=1).clamp_min(1e-300)
        opt.zero_grad()
        (-(num / den).sum()).backward()
        opt.step()
        if domain is not None and not anchored:
            with torch.no_grad():
                y.copy_((_project_t(start + s * y, space, lo, hi) - start) / s)
        if k % 10 == 0 or k == int(steps) - 1:
            trail.append((b if anchored else (a + b) / 2).detach().cpu().numpy())
    P = np.concatenate(trail)
    P = space.project(P) if domain is not None else P
    climbed = certified_lower_bound("gradient-ascent", net, norm, domain, P,
                                    _scores(net, P, norm, space, device), space)
    return better(sampled, climbed, restarts=R, steps=int(steps), samples=int(samples),
                  sampled_value=sampled.value, ascent_value=climbed.value)


def _clip_ball(v: torch.Tensor, r: float) -> torch.Tensor:
    nrm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    return v * torch.clamp(r / nrm.clamp_min(1e-300), max=1.0)


def _project_t(x: torch.Tensor, space: SearchSpace, lo: torch.Tensor, hi: torch.Tensor
               ) -> torch.Tensor:
    if space.domain is not None and space.domain.kind == "ball":
        c = as_tensor(space.domain.center.ravel(), device=x.device)
        return c + _clip_ball(x - c, float(space.domain.radius))
    return torch.maximum(torch.minimum(x, hi), lo)


@dataclass(frozen=True)
class LogWarp:
    """A map from [-1, 1]^n onto the search box and beyond: coordinate i goes to
    c_i + sign(y_i) h_i g(|y_i|) with g(0) = 0, g(1/2) = 1 (the box) and g(1) = reach,
    exponential in between, so that an optimiser over the cube sees every scale."""

    center: np.ndarray
    half: np.ndarray
    reach: float

    @property
    def rate(self) -> float:
        return 2.0 * math.log(self.reach - 1.0)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        L = self.rate
        g = np.expm1(np.abs(y) * L) / math.expm1(L / 2)
        return self.center + np.sign(y) * self.half * g

    def inverse(self, x: np.ndarray) -> np.ndarray:
        L = self.rate
        g = np.abs(x - self.center) / self.half
        y = np.sign(x - self.center) * np.log1p(g * math.expm1(L / 2)) / L
        return np.clip(y, -1.0, 1.0)


@method("annealing", kind="lower", cost="search",
        norms=("2", "inf", "1"), anchored="optional", graphs=True,
        groupsort=True,
        summary="simulated annealing (scipy dual_annealing) on the Jacobian norm, every scale")
def annealing(net: Network, *, norm: str = "2", domain: Domain | None = None,
              maxfun: int = 3000, samples: int = 2000, seed: int = 0, multiscale: bool = True,
              radius: float | None = None, X: Any = None, device: Any = None) -> Bound:
    """Generalised simulated annealing (scipy.optimize.dual_annealing without local search)
    maximising ||J(x)||, started from the best point of the `random` search with the same
    `samples` and `seed` (never ending below it): `maxfun` evaluations over the search box
    or the domain's box (points outside a ball are projected), and for a global search as
    many again over a cube mapped onto every scale (`LogWarp`, out to where the rays have
    their patterns at infinity).

    Reference: the "Annealing" column of Scaman & Virmaux, NeurIPS 2018 (Table 1).
    Guarantee: certified lower bound with witness pair (x, y).
    """
    from scipy.optimize import dual_annealing

    space = _space(net, domain, X, radius)
    sampled, P0, _, S0 = _sampled("annealing", net, norm, domain, space, samples,
                                  np.random.default_rng(seed), multiscale, radius is not None,
                                  device)
    reach = far_scale(net, space) if multiscale and domain is None and radius is None else 1.0
    best = P0[int(np.argmax(S0))]
    # one run over the box (or domain); one over every scale when the search reaches out
    runs: list[tuple[LogWarp | None, list, np.ndarray]] = [
        (None, list(zip(space.lower.tolist(), space.upper.tolist())),
         np.clip(best, space.lower, space.upper))]
    if reach > 2.0:
        warp = LogWarp(space.center, (space.upper - space.lower) / 2, reach)
        runs.append((warp, [(-1.0, 1.0)] * net.input_dim, warp.inverse(best)))
    seen: list[np.ndarray] = []
    scores: list[float] = []
    for warp, bounds, x0 in runs:
        def objective(z: np.ndarray, warp: LogWarp | None = warp) -> float:
            p = warp(z[None]) if warp is not None else space.project(z[None])
            s = float(_scores(net, p, norm, space, device)[0])
            seen.append(p[0])
            scores.append(s)
            return -s

        dual_annealing(objective, bounds, maxfun=int(maxfun), seed=seed, no_local_search=True,
                       x0=x0)
    annealed = certified_lower_bound("annealing", net, norm, domain, np.array(seen),
                                     np.array(scores), space)
    return better(sampled, annealed, evaluations=len(seen), samples=int(samples),
                  reach=reach, sampled_value=sampled.value, annealed_value=annealed.value)


GRID_DEFAULT_POINTS = {1: 20_000, 2: 400, 3: 60}


@method("grid", kind="lower", cost="search",
        norms=("2", "inf", "1"), anchored="optional", graphs=True,
        groupsort=True,
        summary="Jacobian norm on a regular grid (input dimension <= 3)")
def grid(net: Network, *, norm: str = "2", domain: Domain | None = None,
         resolution: int | None = None, radius: float | None = None, X: Any = None,
         device: Any = None) -> Bound:
    """Jacobian norms at every point of a regular grid over the search box or domain.

    Reference: the "Grid Search" column of Scaman & Virmaux, NeurIPS 2018 (Table 1).
    Guarantee: certified lower bound with witness pair (x, y).
    """
    n = net.input_dim
    if n > 3:
        raise UnsupportedError(f"grid search needs input dimension <= 3, this net has {n}")
    space = _space(net, domain, X, radius)
    res = int(resolution or GRID_DEFAULT_POINTS[n])
    axes = [np.linspace(lo, hi, res) for lo, hi in zip(space.lower, space.upper)]
    P = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, n)
    P = P[space.contains(P)]
    return certified_lower_bound("grid", net, norm, domain, P,
                                 _scores(net, P, norm, space, device), space,
                                 {"resolution": res})


@method("clever", kind="estimate", cost="search", norms=("2", "inf", "1"), domain="required",
        anchored="optional", graphs=True,
        groupsort=True,
        summary="CLEVER: extreme-value estimate of the local constant (no guarantee)")
def clever(net: Network, *, norm: str = "2", domain: Domain | None = None,
           batches: int = 50, batch_size: int = 64, seed: int = 0, device: Any = None) -> Bound:
    """Fit a reverse Weibull distribution to the per-batch maxima of ||J|| sampled in the
    domain and report its location parameter.

    Reference: Weng et al., "Evaluating the Robustness of Neural Networks: An Extreme Value
    Theory Approach" (CLEVER), ICLR 2018.
    Guarantee: estimate, no guarantee (it can fall below or above the true constant).
    """
    from scipy.stats import weibull_max

    space = _space(net, domain, None, None)
    rng = np.random.default_rng(seed)
    P = space.sample(int(batches) * int(batch_size), rng)
    s = jacobian_norms(batch_jacobians(net, P, device=device), norm).cpu().numpy().reshape(
        int(batches), -1)
    maxima = s.max(1)
    top = float(maxima.max())
    try:
        shape, loc, scale = weibull_max.fit(maxima)
        value = float(loc) if math.isfinite(loc) else top
    except Exception:  # noqa: BLE001 - the fit can fail on degenerate samples
        value = top
    # a fit extrapolating beyond the spread of the observed maxima is not trusted (on flat,
    # piecewise-constant ReLU gradients it can run off by orders of magnitude)
    value = min(max(value, top), top + (top - float(maxima.min())))
    return Bound("clever", "estimate", value, norm, domain=domain,
                 details={"sample_max": float(maxima.max()), "samples": int(P.shape[0])})

