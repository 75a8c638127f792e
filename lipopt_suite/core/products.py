"""Product bounds: the Lipschitz constant of a composition is at most the product of the
layers' constants."""

from __future__ import annotations

import math
from typing import Any

from ..bound import Bound, Domain
from ..errors import UnsupportedError
from ..network import Activation, Affine, AvgPool2d, Conv2d, MaxPool2d, Network
from ..registry import method
from .autolip import graph_autolip
from .linalg import frobenius_norm, layer_upper_bounds, network_layer_bounds


@method("frobenius", kind="upper", cost="cheap", norms=("2",), domain="never", groupsort=True,
        summary="product of the layers' Frobenius norms (and activation slopes)")
def frobenius(net: Network, *, norm: str = "2", domain: Domain | None = None) -> Bound:
    """Product of Frobenius norms: ||W||_2 <= ||W||_F for every linear layer.

    Reference: the naive bound reported beside AutoLip by Scaman & Virmaux (NeurIPS 2018).
    Guarantee: certified upper bound on the global l2 constant (loose by up to sqrt(rank)
    per layer).
    """
    if net.is_graph:
        raise UnsupportedError("frobenius needs a sequential network, this one is a "
                               "computation graph")
    shapes = net.shapes()
    factors: list[float] = []
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (Affine, Conv2d, AvgPool2d)):
            f = frobenius_norm(layer, shapes[i]) * (1 + 1e-12)
        elif isinstance(layer, Activation):
            f = layer.lipschitz
        elif isinstance(layer, MaxPool2d):
            f = math.sqrt(layer.overlap)
        else:  # flatten; GroupSort permutes each group, 1-Lipschitz in l2
            f = 1.0
        factors.append(f)
    value = rounded_up_product(factors)
    return Bound("frobenius", "upper", value, norm, certified=True,
                 details={"factors": factors})


def rounded_up_product(factors: list[float]) -> float:
    """A float >= the exact product of non-negative factors: each multiplication rounds by
    at most half an ulp, and a product that underflows to 0 becomes the least positive
    float."""
    value = math.prod(factors)
    if value == 0.0 and factors and all(f > 0 for f in factors):
        return math.ulp(0.0)
    return value * (1 + 2 * len(factors) * 2.0**-53) if math.isfinite(value) else value


@method("autolip", kind="upper", cost="cheap", norms=("2", "inf", "1"), domain="never", graphs=True,
        groupsort=True,
        summary="AutoLip: product of certified layer norms; Algorithm 2 on graphs")
def autolip(net: Network, *, norm: str = "2", domain: Domain | None = None,
            device: Any = None, power_method: bool = True) -> Bound:
    """AutoLip: for a sequential network the product of each layer's Lipschitz constant, for
    a computation graph the propagation of Algorithm 2 (core/autolip.py: each node's bound
    from its partial derivatives and its inputs' bounds; a residual sum adds them).

    Reference: Scaman & Virmaux, "Lipschitz regularity of deep neural networks: analysis and
    efficient estimation", NeurIPS 2018 (Algorithm 2). Layer norms: l1/l_inf exactly from
    absolute sums; l2 by certified spectral bounds (SVD + Cholesky certificate for dense
    layers, the circular-convolution DFT bound for convolutions). The estimate in details
    uses the power-method lower values instead (the paper's AutoLip value);
    `power_method=False` skips them (large convolutions get their Fourier bound alone:
    the same kind of certified value, faster).
    Guarantee: certified upper bound on the global l_p constant.
    """
    if net.is_graph:
        return graph_autolip(net, norm, device=device, power_method=power_method)
    if not power_method:
        factors = layer_upper_bounds(net, norm, device=device)
        return Bound("autolip", "upper", rounded_up_product(factors), norm, certified=True,
                     details={"factors": factors})
    bounds = network_layer_bounds(net, norm, device=device)
    upper = rounded_up_product([b.upper for b in bounds])
    estimate = math.prod(b.lower for b in bounds)
    return Bound("autolip", "upper", upper, norm, certified=all(b.certified for b in bounds),
                 details={"factors": [b.upper for b in bounds],
                          "power_method_product": estimate,
                          "layer_methods": sorted({b.how for b in bounds})})
