"""AutoLip on a computation graph (Scaman & Virmaux, NeurIPS 2018, Algorithm 2).

For the graph (g_1, ..., g_K) of a network, with g_0 = x, the Lipschitz constant L_k of
x -> g_k(x) satisfies L_k <= sum_i max_z ||d g_k / d g_i (z)|| L_i over the inputs g_i of
node k, and L_K bounds the network. Each node contributes a certified bound on its partial
derivatives:
* affine nodes (linear, convolution, average pooling, flatten, eval-mode batch norm): a
  certified bound on the operator norm of their linear map (`core/linalg.py`: Gram/Cholesky
  proofs for dense layers, the circular-convolution DFT bound or the exact matrix for
  convolutions, the largest |scale| for a batch norm);
* elementwise functions: the table of derivative bounds `network.SLOPES` (relu, leaky relu,
  tanh, sigmoid, softplus, abs, sin, cos); group sort 1; max pooling the overlap constant;
* a sum sum_i c_i x_i + c: sum_i |c_i| L_i; a concatenation: (sum_i L_i^2)^(1/2) in l2,
  max_i L_i in l_inf, sum_i L_i in l1 (the exact norm of the stacked differences).
Every product and sum rounds upwards (`numerics.rounding.up`), so the value is >= the
exact recursion of the certified factors. On a chain the recursion is the product of the
layer norms: the sequential AutoLip of `core/products.py`, to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..bound import Bound
from ..errors import UnsupportedError
from ..network import Add, Concat, Network, Node, op_name
from ..numerics.rounding import up
from ..numerics.spectral import NormBounds
from .linalg import layer_norm_bounds, layer_upper_bound


@dataclass(frozen=True)
class NodeBound:
    """Node k's certified Lipschitz bound (`upper`, as a function of the network input), its
    power-method counterpart (`estimate`, the paper's value) and its own factor."""

    node: int
    op: str
    inputs: tuple[int, ...]
    factor: float  # certified bound on ||d g_k / d g_i|| (|c_i| of a sum: the largest)
    upper: float
    estimate: float
    certified: bool
    how: str

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "op": self.op, "inputs": list(self.inputs),
                "factor": self.factor, "lipschitz": self.upper, "estimate": self.estimate,
                "certified": self.certified, "how": self.how}


def _up_sum(values: list[float]) -> float:
    """A float >= the exact sum of the values."""
    total = values[0] if values else 0.0
    for v in values[1:]:
        total = up(total + v)
    return total


def _combine(node: Node, ins_up: list[float], ins_est: list[float], norm: str
             ) -> tuple[float, float, float]:
    """(upper, estimate, factor) of a multi-input node from its inputs' bounds."""
    op = node.op
    if isinstance(op, Add):
        coeffs = [abs(c) for c in op.coeffs]
        upper = _up_sum([u if c == 1.0 else up(c * u) for c, u in zip(coeffs, ins_up)])
        estimate = sum(c * e for c, e in zip(coeffs, ins_est))
        return upper, estimate, max(coeffs)
    if isinstance(op, Concat):
        if norm == "inf":
            return max(ins_up), max(ins_est), 1.0
        if norm == "1":
            return _up_sum(ins_up), sum(ins_est), 1.0
        # math.sqrt is correctly rounded, so up() of it is above the exact root
        squares = _up_sum([up(u * u) for u in ins_up])
        return up(math.sqrt(squares)), math.sqrt(sum(e * e for e in ins_est)), 1.0
    raise UnsupportedError(f"autolip: no rule for the {op_name(op)} node")


def node_factors(net: Network, norm: str, *, device: Any = None, power_method: bool = True
                 ) -> list[NormBounds | None]:
    """Each node's certified bound on its own Lipschitz constant (its linear map's norm, its
    derivative bound), None for sums and concatenations (combined by `_combine`). Without
    the power method the lower values are NaN and large convolutions get their Fourier
    bound alone (core/linalg.py `layer_upper_bound`). Memoised on the network."""
    def compute() -> list[NormBounds | None]:
        shapes = net.shapes()
        out: list[NormBounds | None] = []
        for k, node in enumerate(net.as_nodes(), start=1):
            if isinstance(node.op, (Add, Concat)):
                out.append(None)
                continue
            shape = shapes[node.inputs[0]]
            try:
                if power_method:
                    out.append(layer_norm_bounds(node.op, shape, norm, device=device))
                else:
                    out.append(NormBounds(math.nan, layer_upper_bound(
                        node.op, shape, norm, device=device), True, "upper-only"))
            except UnsupportedError:
                raise UnsupportedError(f"autolip: no Lipschitz rule for node {k} "
                                       f"({op_name(node.op)})") from None
        return out

    if not power_method and net.memoised(__name__, ("factors", norm, str(device), True)):
        return node_factors(net, norm, device=device, power_method=True)
    return list(net.memo(__name__, ("factors", norm, str(device), power_method), compute))


def propagate(nodes: tuple[Node, ...], factors: list[NormBounds | None], norm: str,
              start: float, local: list[float] | None = None) -> list[tuple[float, float]]:
    """Algorithm 2's recursion: (upper, estimate) for the input (`start`) and every node,
    each node adding `local[k - 1]` (0 by default) to its propagated upper value."""
    upper, est = [start], [start]
    for k, node in enumerate(nodes, start=1):
        ins_up = [upper[i] for i in node.inputs]
        ins_est = [est[i] for i in node.inputs]
        nb = factors[k - 1]
        if nb is None:
            u, e, _ = _combine(node, ins_up, ins_est, norm)
        else:
            u = ins_up[0] if nb.upper == 1.0 else up(nb.upper * ins_up[0])
            e = nb.lower * ins_est[0]
        if local is not None and local[k - 1]:
            u = up(u + local[k - 1])
        upper.append(u)
        est.append(e)
    return list(zip(upper, est))


def node_bounds(net: Network, norm: str, *, device: Any = None, power_method: bool = True
                ) -> list[NodeBound]:
    """Algorithm 2 over the network's graph (a sequential network's chain): the certified
    bound of every node, in order."""
    nodes = net.as_nodes()
    factors = node_factors(net, norm, device=device, power_method=power_method)
    values = propagate(nodes, factors, norm, 1.0)
    out = []
    for k, (node, nb) in enumerate(zip(nodes, factors), start=1):
        if nb is None:
            factor = max(abs(c) for c in node.op.coeffs) if isinstance(node.op, Add) else 1.0
            certified, how = True, op_name(node.op)
        else:
            factor, certified, how = nb.upper, nb.certified, nb.how
        out.append(NodeBound(k, op_name(node.op), node.inputs, factor, values[k][0],
                             values[k][1], certified, how))
    return out


def graph_autolip(net: Network, norm: str = "2", *, device: Any = None,
                  power_method: bool = True) -> Bound:
    """AutoLip's Algorithm 2 on `net` as a Bound: the output node's certified bound, every
    node's bound in details["nodes"], the power-method recursion (the paper's AutoLip value,
    an estimate) in details["power_method_value"]."""
    bounds = node_bounds(net, norm, device=device, power_method=power_method)
    last = bounds[-1]
    return Bound("autolip", "upper", last.upper, norm,
                 certified=all(b.certified for b in bounds),
                 details={"nodes": [b.to_dict() for b in bounds],
                          "power_method_value": last.estimate,
                          "layer_methods": sorted({b.how for b in bounds})})
