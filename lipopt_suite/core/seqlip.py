"""SeqLip: exploit the alignment of singular vectors of consecutive layers.

Scaman & Virmaux, "Lipschitz regularity of deep neural networks: analysis and efficient
estimation", NeurIPS 2018, Section 6. With M_i = U_i S_i V_i^T,
L(f) <= prod_{i=1}^{K-1} max_{s in [alpha, beta]^{n_i}} ||S~_{i+1} V_{i+1}^T diag(s) U_i S~_i||_2
where S~_i = S_i on the first and last layer and S_i^(1/2) inside. The inner maximum of a
convex function over a box is attained at a vertex.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ..bound import Bound, Domain
from ..errors import UnsupportedError
from ..network import Activation, Affine, AvgPool2d, Conv2d, Flatten, MaxPool2d, Network
from ..numerics.rounding import UNIT_ROUNDOFF
from ..numerics.spectral import dense_spectral_bounds, top_singular
from ..registry import method
from .linalg import layer_operator
from .patterns import greedy_pattern_norm, max_pattern_norm

# Widths above this make the exact inner max (2^n vertices) too slow: about 2 s at n = 20
# on 2 cores, doubling with every unit of width.
MAX_EXACT_WIDTH = 22
UNIT = UNIT_ROUNDOFF


def _factors(weights: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [np.linalg.svd(W, full_matrices=False) for W in weights]


def _inner_matrices(svds: list, i: int, last: int) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of the inner problem at the activation between layer i and i + 1."""
    U_i, S_i, _ = svds[i]
    _, S_n, Vh_n = svds[i + 1]
    left = S_n if i + 1 == last else np.sqrt(S_n)
    right = S_i if i == 0 else np.sqrt(S_i)
    return left[:, None] * Vh_n, U_i * right[None, :]


@method("seqlip", kind="upper", cost="search", norms=("2",), mlp_only=True, domain="never",
        summary="SeqLip with the exact inner max over activation patterns (small widths)")
def seqlip(net: Network, *, norm: str = "2", domain: Domain | None = None,
           max_width: int = MAX_EXACT_WIDTH, time_limit: float | None = None) -> Bound:
    """SeqLip upper bound with each inner maximum over {alpha, beta}^n computed exactly.

    Reference: Scaman & Virmaux, NeurIPS 2018 (SeqLip). The inner maximum is enumerated in
    batches with a certified pruning screen (see core/patterns.py); it is refused for hidden
    widths above `max_width` (use seqlip-greedy there). With `time_limit` an unfinished
    inner maximum falls back to its AutoLip factor, so the value stays an upper bound.
    The floating-point SVDs are checked a posteriori (residuals and orthogonality of the
    factors) and their defects added to the bound.
    Guarantee: certified upper bound on the global l2 constant.
    """
    weights, _, acts = net.mlp()
    if len(weights) == 1:
        nb = dense_spectral_bounds(weights[0])
        return Bound("seqlip", "upper", nb.upper, norm, certified=nb.certified,
                     details={"factors": [nb.upper]})
    for i in range(len(acts)):
        width = weights[i].shape[0]
        if width > max_width:
            raise UnsupportedError(
                f"seqlip: hidden layer {i + 1} has width {width} > {max_width}, where the exact "
                f"inner max over 2^{width} patterns is infeasible; use seqlip-greedy (an "
                "estimate) or pass max_width")
    start = time.perf_counter()
    svds = _factors(weights)
    last = len(weights) - 1
    factors, complete, evaluated = [], True, 0
    for i, act in enumerate(acts):
        A, B = _inner_matrices(svds, i, last)
        remaining = None if time_limit is None else max(time_limit - (
            time.perf_counter() - start), 0.0)
        res = max_pattern_norm(A, B, *act.slopes, time_limit=remaining)
        factors.append(res.upper)
        complete &= res.complete
        evaluated += res.evaluated
    value, defects = _svd_certified_value(weights, svds, factors,
                                          [max(abs(a) for a in act.slopes) for act in acts])
    return Bound("seqlip", "upper", value, norm, certified=True,
                 status="ok" if complete else "timeout",
                 details={"factors": factors, "exact_inner_max": complete,
                          "exact_evaluations": evaluated, "svd_defects": defects})


def _defect(M: np.ndarray) -> float:
    """Upper bound on ||M^T M - I||_2 computed in float64 (Frobenius norm plus the rounding
    of the product)."""
    n = M.shape[0]
    G = M.T @ M - np.eye(M.shape[1])
    return float(np.linalg.norm(G)) * (1 + 1e-6) + (n + 2) * UNIT * float(np.sum(M * M)) * 2


def _svd_certified_value(weights: list[np.ndarray], svds: list, factors: list[float],
                         slopes: list[float]) -> tuple[float, dict[str, Any]]:
    """A proven bound from SeqLip's factors computed on floating-point SVDs W ~ U S V^T.

    The factorisation W^ = U S V^T holds exactly for the computed factors, so SeqLip's
    identity gives max ||J^|| <= ||U_last|| * prod(factors) * ||V_first||, where
    ||U||^2 <= 1 + ||U^T U - I||. The residuals R = W - W^ add at most
    prod(||W^_k|| + ||R_k||) - prod ||W^_k|| (times the activations' slopes), with
    ||W^_k|| <= s_max ||U_k|| ||V_k|| and ||R_k|| <= its Frobenius norm plus rounding.
    """
    residuals, hat_norms = [], []
    for W, (U, S, Vh) in zip(weights, svds):
        k = S.size
        R = W - (U * S) @ Vh
        gamma = (k + 3) * UNIT
        r = float(np.linalg.norm(R)) * (1 + 1e-6) + 2 * gamma * (
            float(np.linalg.norm(W)) + float(np.linalg.norm(U * S)) * float(np.linalg.norm(Vh)))
        residuals.append(r)
        hat_norms.append(float(S[0]) * math.sqrt((1 + _defect(U)) * (1 + _defect(Vh.T))))
    U_last, V_first = svds[-1][0], svds[0][2].T
    core = math.prod(factors) * math.sqrt((1 + _defect(U_last)) * (1 + _defect(V_first)))
    slope = math.prod(slopes)
    extra = slope * (math.prod(h + r for h, r in zip(hat_norms, residuals))
                     - math.prod(hat_norms))
    n = len(weights)
    value = (core + max(extra, 0.0) * (1 + 1e-6)) * (1 + 8 * n * UNIT)
    return value, {"residuals": residuals, "relative_inflation": value / math.prod(factors) - 1}


@method("seqlip-greedy", kind="estimate", cost="cheap", norms=("2",), domain="never",
        summary="SeqLip with a greedy inner max (conv nets: top singular vectors); no guarantee")
def seqlip_greedy(net: Network, *, norm: str = "2", domain: Domain | None = None,
                  top_k: int = 64, device: Any = None) -> Bound:
    """Greedy SeqLip: the inner maximum by alternating ascent instead of enumeration.

    Reference: Scaman & Virmaux, NeurIPS 2018 (Greedy SeqLip; for CNNs the SVDs are
    truncated to the top singular vectors found by the power method, as in the paper's CNN
    table). MLPs use full SVDs; other networks use `top_k` singular triplets per linear
    block (consecutive linear layers composed), and max-pooling splits the chain (its
    overlap constant multiplies the product).
    Guarantee: estimate, no guarantee (the greedy max and the truncation can both fall short
    of the SeqLip bound, and SeqLip itself can be far above the true constant).
    """
    if net.has_groupsort:
        net.mlp()  # raises: GroupSort is not an elementwise activation
    if net.is_mlp:
        weights, _, acts = net.mlp()
        svds = _factors(weights)
        if len(weights) == 1:
            return Bound("seqlip-greedy", "estimate", float(svds[0][1][0]), norm,
                         details={"factors": [float(svds[0][1][0])]})
        factors = []
        for i, act in enumerate(acts):
            A, B = _inner_matrices(svds, i, len(weights) - 1)
            factors.append(greedy_pattern_norm(A, B, *act.slopes)[0])
        return Bound("seqlip-greedy", "estimate", math.prod(factors), norm,
                     details={"factors": factors})
    return _greedy_general(net, norm, top_k, device)


def _segments(net: Network) -> tuple[list[list[tuple[list[int], Activation | None]]], float]:
    """Split the layers into chains of linear blocks joined by activations; max-pooling
    ends a chain. Returns (chains, product of the pooling constants)."""
    chains: list[list[tuple[list[int], Activation | None]]] = [[]]
    block: list[int] = []
    pool_const = 1.0
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (Affine, Conv2d, AvgPool2d, Flatten)):
            block.append(i)
        elif isinstance(layer, Activation):
            chains[-1].append((block, layer))
            block = []
        elif isinstance(layer, MaxPool2d):
            chains[-1].append((block, None))
            pool_const *= math.sqrt(layer.overlap)
            chains.append([])
            block = []
    chains[-1].append((block, None))
    return chains, pool_const


def _greedy_general(net: Network, norm: str, top_k: int, device: Any) -> Bound:
    shapes = net.shapes()
    chains, value = _segments(net)
    factors: list[float] = []
    for chain in chains:
        trip = []  # (sigma, V (k, n_in), U (n_out, k)) per block; None for identity blocks
        for block, _ in chain:
            if not any(isinstance(net.layers[i], (Affine, Conv2d, AvgPool2d)) for i in block):
                trip.append(None)
                continue
            ops = [layer_operator(net.layers[i], device) for i in block]

            def fn(x: torch.Tensor, ops: list = ops) -> torch.Tensor:
                for op in ops:
                    x = op(x)
                return x

            in_shape = shapes[block[0]]
            k = min(top_k, int(np.prod(in_shape)), int(np.prod(shapes[block[-1] + 1])))
            sig, V, U = top_singular(fn, in_shape, k, device=device)
            trip.append((sig.cpu(), V.flatten(1).cpu(), U.flatten(1).T.cpu()))
        # activations whose both sides are real blocks contribute SeqLip factors; a lone
        # activation (e.g. after a max-pool) contributes its slope bound
        if all(t is None for t in trip):
            for _, act in chain:
                value *= act.lipschitz if act is not None else 1.0
            continue
        real = [j for j, t in enumerate(trip) if t is not None]
        if len(real) == 1:
            factors.append(float(trip[real[0]][0][0]))
            for _, act in chain:
                value *= act.lipschitz if act is not None else 1.0
            continue
        for j, (_, act) in enumerate(chain):
            if act is not None and not (j in real and j + 1 in real):
                value *= act.lipschitz  # an activation not between two blocks
        for a, b in zip(real[:-1], real[1:]):
            act = chain[a][1]
            if b != a + 1 or act is None:
                raise UnsupportedError("seqlip-greedy: two linear blocks without exactly one "
                                       "activation between them")
            s_i, _, U_i = trip[a]
            s_n, V_n, _ = trip[b]
            left = s_n if b == real[-1] else s_n.sqrt()
            right = s_i if a == real[0] else s_i.sqrt()
            A = left[:, None] * V_n
            B = U_i * right[None, :]
            factors.append(greedy_pattern_norm(A, B, *act.slopes, starts=4)[0])
    total = value * math.prod(factors)
    return Bound("seqlip-greedy", "estimate", total, norm,
                 details={"factors": factors, "top_k": top_k, "pooling_constant": value})
