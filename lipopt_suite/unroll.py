"""Exact unrolling of a sequential network into a plain MLP (the same function).

Convolutions, average pooling and flattening are linear maps: their dense float64 matrices
act on inputs flattened in torch's (C, H, W) order, and linear maps with no activation
between them are composed into one affine layer. Max pooling enters as ReLU gadgets:
max(a, b) = b + relu(a - b), a window as a tree of pairwise maxima, one ReLU layer per
level; a value that must cross a ReLU layer unchanged passes as relu(x) when x is provably
>= 0 (an output of a ReLU, a maximum or a non-negative combination of such) and as
relu(x) - relu(-x) otherwise. The result is a `Network` of Affine layers and elementwise
activations with a flat input, computing exactly the function of the original: every
entry written is a weight copied, a sum or product that is exact in float64 (checked:
one term per entry, scaled by a power of two, biases added without rounding), or else the
values cross a ReLU layer as above instead of being composed. Average pooling over a window
whose size is not a power of two (1/9 is no float64 number) is refused, as is GroupSort on
an unflattened input.

The matrices are dense; `MAX_UNITS` (hidden units) and `MAX_ENTRIES` (matrix entries, all
layers together) bound the size, above which `unroll` refuses in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .network import (
    Activation,
    Affine,
    AvgPool2d,
    Conv2d,
    Flatten,
    GroupSort,
    MaxPool2d,
    Network,
)

MAX_UNITS = 20_000  # hidden units of the unrolled MLP
MAX_ENTRIES = 20_000_000  # float64 matrix entries, all layers together (160 MB)
# activations whose outputs are never negative (so they pass a ReLU unchanged)
NON_NEGATIVE = ("relu", "sigmoid")


@dataclass(frozen=True)
class Unrolled:
    """An unrolled network and what unrolling did (`info`: sizes, for `details`)."""

    net: Network
    info: dict[str, Any]


@dataclass
class _Pending:
    """Values not yet written as a layer: A @ s + c, s the outputs of the last activation
    layer (or the input); A None is the identity (then c is 0)."""

    A: np.ndarray | None
    c: np.ndarray
    src_nonneg: np.ndarray  # whether each source value is provably >= 0

    @property
    def size(self) -> int:
        return self.c.size

    def matrix(self) -> np.ndarray:
        return np.eye(self.size) if self.A is None else self.A

    def row_nonneg(self) -> np.ndarray:
        """Rows provably >= 0: non-negative coefficients on non-negative sources only, and a
        non-negative offset."""
        if self.A is None:
            return self.src_nonneg.copy()
        A = self.A
        ok = ~np.any(A[:, ~self.src_nonneg] != 0, axis=1) & np.all(A >= 0, axis=1)
        return ok & (self.c >= 0)


def _pow2(x: np.ndarray) -> bool:
    """Whether every nonzero entry is +-2^k (a product by it is exact barring underflow)."""
    nz = x[x != 0]
    return bool(np.all(np.abs(np.frexp(nz)[0]) == 0.5))


def _exact_add(p: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """p + b when every sum is exact in float64 (TwoSum's error term zero), else None."""
    s = p + b
    bb = s - p
    err = (p - (s - bb)) + (b - bb)
    return s if np.all(err == 0) and np.all(np.isfinite(s)) else None


def _exact_product(M: np.ndarray, A: np.ndarray) -> np.ndarray | None:
    """M @ A when provably exact: each entry has at most one nonzero term, whose product
    has a power-of-two factor and neither underflows nor overflows; else None."""
    terms = (M != 0).astype(np.float64) @ (A != 0).astype(np.float64)
    if terms.size and terms.max() > 1:
        return None
    if not (_pow2(A) or _pow2(M)):
        return None
    P = M @ A
    one = terms == 1
    tiny = np.finfo(np.float64).tiny
    if not np.all(np.isfinite(P)) or np.any(one & (np.abs(P) < tiny)):
        return None
    return P


class _Builder:
    """Collects the MLP's layers, counting hidden units and matrix entries."""

    def __init__(self, n: int, max_units: int, max_entries: int, what: str) -> None:
        self.layers: list[Any] = []
        self.units = self.entries = self.pass_units = self.pool_units = 0
        self.max_units, self.max_entries, self.what = int(max_units), int(max_entries), what
        self.pending = _Pending(None, np.zeros(n), np.zeros(n, dtype=bool))

    def check(self, rows: int, cols: int, units: int = 0) -> None:
        entries = self.entries + rows * cols
        if entries > self.max_entries:
            raise UnsupportedError(
                f"unrolling {self.what} into an MLP needs more than {entries:,} matrix "
                f"entries (limit {self.max_entries:,}: option unroll_entries)")
        if self.units + units > self.max_units:
            raise UnsupportedError(
                f"unrolling {self.what} into an MLP needs more than {self.units + units:,} "
                f"hidden units (limit {self.max_units:,}: option unroll_units)")

    def emit(self, W: np.ndarray, b: np.ndarray, act: Any | None) -> None:
        """Append Affine(W, b) and, unless None, the activation layer after it."""
        self.check(*W.shape, W.shape[0] if act is not None else 0)
        self.layers.append(Affine(W, b))
        self.entries += W.size
        if act is not None:
            self.units += W.shape[0]
            self.layers.append(act)

    def materialize(self) -> None:
        """Write the pending values as a layer crossing a ReLU unchanged: relu(x) for rows
        >= 0, relu(x) - relu(-x) otherwise; they become a +-1 selection of its outputs."""
        p = self.pending
        keep = p.row_nonneg()
        neg = np.flatnonzero(~keep)
        self.check(p.size + neg.size, p.A.shape[1] if p.A is not None else p.size,
                   p.size + neg.size)
        A = p.matrix()
        W = np.vstack([A, -A[neg]])
        b = np.concatenate([p.c, -p.c[neg]])
        self.emit(W, b, Activation("relu"))
        self.pass_units += W.shape[0]
        S = np.zeros((p.size, W.shape[0]))
        S[np.arange(p.size), np.arange(p.size)] = 1.0
        S[neg, p.size + np.arange(neg.size)] = -1.0
        self.pending = _Pending(S, np.zeros(p.size), np.ones(W.shape[0], dtype=bool))

    def compose(self, M: np.ndarray, b: np.ndarray) -> _Pending | None:
        """The pending values after the linear map x -> M x + b, when exact."""
        p = self.pending
        if p.A is None:
            return _Pending(np.array(M, dtype=np.float64), np.array(b, dtype=np.float64),
                            p.src_nonneg)
        self.check(M.shape[0], p.A.shape[1])
        A = _exact_product(M, p.A)
        c0 = _exact_product(M, p.c) if A is not None else None
        c = _exact_add(c0, np.asarray(b, np.float64)) if c0 is not None else None
        if A is None or c is None:
            return None
        return _Pending(A, c, p.src_nonneg)

    def linear(self, M: np.ndarray, b: np.ndarray) -> None:
        nxt = self.compose(M, b)
        if nxt is None:
            self.materialize()
            nxt = self.compose(M, b)
            if nxt is None:  # a +-1 selection times M is exact unless it underflows
                raise UnsupportedError(f"unrolling {self.what}: a weight underflows float64")
        self.pending = nxt

    def activation(self, act: Any) -> None:
        p = self.pending
        self.emit(p.matrix(), p.c, act)
        nonneg = isinstance(act, Activation) and act.name in NON_NEGATIVE
        self.pending = _Pending(None, np.zeros(p.size), np.full(p.size, nonneg))

    def select(self, rows: np.ndarray) -> None:
        p = self.pending
        self.pending = _Pending(p.matrix()[rows], p.c[rows], p.src_nonneg)

    def max_windows(self, windows: list[np.ndarray]) -> None:
        """Replace the pending values by the maximum over each window (a list of indices
        into them): a tree of pairwise maxima, one ReLU layer per level."""
        items = [list(map(int, w)) for w in windows]
        while any(len(it) > 1 for it in items):
            nonneg = self.pending.row_nonneg()
            rows: list[tuple[tuple[int, float], ...]] = []
            combos: list[list[tuple[int, float]]] = []

            new_items = []
            for it in items:
                new = []
                for j in range(0, len(it) - 1, 2):
                    a, b = it[j], it[j + 1]
                    if nonneg[a] and not nonneg[b]:
                        a, b = b, a
                    rows.append(((a, 1.0), (b, -1.0)))  # relu(a - b) ...
                    combos.append([(len(rows) - 1, 1.0)] + _through(b, nonneg, rows))  # ... + b
                    new.append(len(combos) - 1)
                if len(it) % 2:
                    combos.append(_through(it[-1], nonneg, rows))
                    new.append(len(combos) - 1)
                new_items.append(new)
            D = np.zeros((len(rows), self.pending.size))
            for i, terms in enumerate(rows):
                for r, s in terms:
                    D[i, r] = s
            self.linear(D, np.zeros(len(rows)))
            self.activation(Activation("relu"))
            self.pool_units += len(rows)
            G = np.zeros((len(combos), len(rows)))
            for i, terms in enumerate(combos):
                for u, s in terms:
                    G[i, u] = s
            self.pending = _Pending(G, np.zeros(len(combos)), np.ones(len(rows), dtype=bool))
            items = new_items
        self.select(np.array([it[0] for it in items], dtype=np.int64))


def _through(r: int, nonneg: np.ndarray, rows: list) -> list[tuple[int, float]]:
    """Units passing value r through a ReLU layer (rows appended): relu(x), or
    relu(x) - relu(-x) when x may be negative; returns the combination giving x back."""
    rows.append(((r, 1.0),))
    combo = [(len(rows) - 1, 1.0)]
    if not nonneg[r]:
        rows.append(((r, -1.0),))
        combo.append((len(rows) - 1, -1.0))
    return combo


def conv_matrix(layer: Conv2d, in_shape: tuple[int, ...]) -> np.ndarray:
    """The dense matrix of a convolution on inputs of `in_shape` flattened in (C, H, W)
    order: each entry one weight (or 0), copied."""
    oc, ic, kh, kw = layer.weight.shape
    _, H, W = in_shape
    _, OH, OW = layer.out_shape(in_shape)
    o, i, ky, kx, oy, ox = np.meshgrid(np.arange(oc), np.arange(ic), np.arange(kh),
                                       np.arange(kw), np.arange(OH), np.arange(OW),
                                       indexing="ij")
    y = oy * layer.stride[0] - layer.padding[0] + ky
    x = ox * layer.stride[1] - layer.padding[1] + kx
    ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
    M = np.zeros((oc * OH * OW, ic * H * W))
    rows = ((o * OH + oy) * OW + ox)[ok]
    cols = ((i * H + y) * W + x)[ok]
    M[rows, cols] = layer.weight[o[ok], i[ok], ky[ok], kx[ok]]
    return M


def pool_windows(layer: MaxPool2d | AvgPool2d, in_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Flat (C, H, W) indices of each pooling window, in output order; padding is left out
    (max pooling pads with -inf)."""
    C, H, W = in_shape
    _, OH, OW = layer.out_shape(in_shape)
    out = []
    for c in range(C):
        for oy in range(OH):
            y0 = oy * layer.stride[0] - layer.padding[0]
            ys = np.arange(max(y0, 0), min(y0 + layer.kernel[0], H))
            for ox in range(OW):
                x0 = ox * layer.stride[1] - layer.padding[1]
                xs = np.arange(max(x0, 0), min(x0 + layer.kernel[1], W))
                out.append(((c * H + ys[:, None]) * W + xs[None, :]).ravel())
    return out


def _avgpool_matrix(layer: AvgPool2d, in_shape: tuple[int, ...], where: str) -> np.ndarray:
    k = layer.kernel[0] * layer.kernel[1]
    if k & (k - 1):
        raise UnsupportedError(f"{where}: average pooling over {k} entries cannot be "
                               f"unrolled exactly (1/{k} is not a float64 number)")
    windows = pool_windows(layer, in_shape)
    M = np.zeros((len(windows), int(np.prod(in_shape))))
    for r, w in enumerate(windows):
        M[r, w] = 1.0 / k
    return M


def _unroll_sequential(net: Network, max_units: int, max_entries: int) -> Unrolled:
    shapes = net.shapes()
    b = _Builder(net.input_dim, max_units, max_entries, "this network")
    layers = list(net.layers)
    order = list(range(len(layers)))
    for i in range(len(layers) - 1):
        # a monotone activation commutes with max pooling: relu(max(a, b)) =
        # max(relu(a), relu(b)); the pooled values are then >= 0 (fewer, simpler units)
        if (isinstance(layers[order[i]], MaxPool2d) and isinstance(layers[order[i + 1]],
                                                                  Activation)
                and layers[order[i + 1]].name in NON_NEGATIVE):
            order[i], order[i + 1] = order[i + 1], order[i]
    for i in order:
        layer = layers[i]
        shape = shapes[i]
        where = f"layer {i} ({getattr(layer, 'type_name', type(layer).__name__)})"
        if isinstance(layer, Affine):
            b.linear(layer.W, layer.b)
        elif isinstance(layer, Conv2d):
            b.check(int(np.prod(shapes[i + 1])), int(np.prod(shape)))
            M = conv_matrix(layer, shape)
            b.linear(M, np.repeat(layer.bias, M.shape[0] // layer.bias.size))
        elif isinstance(layer, AvgPool2d):
            b.check(int(np.prod(shapes[i + 1])), int(np.prod(shape)))
            M = _avgpool_matrix(layer, shape, where)
            b.linear(M, np.zeros(M.shape[0]))
        elif isinstance(layer, MaxPool2d):
            b.max_windows(pool_windows(layer, shape))
        elif isinstance(layer, Flatten):
            continue
        elif isinstance(layer, GroupSort):
            if len(shape) != 1:
                raise UnsupportedError(f"{where}: GroupSort on an input of shape {shape} "
                                       "does not unroll (its groups are not contiguous)")
            b.activation(layer)
        elif isinstance(layer, Activation):
            b.activation(layer)
        else:
            raise UnsupportedError(f"{where}: cannot be unrolled into an MLP")
    p = b.pending
    b.emit(p.matrix(), p.c, None)
    mlp = Network(tuple(b.layers), (net.input_dim,)).validate()
    ws = [layer.W for layer in mlp.layers if isinstance(layer, Affine)]
    info = {"from": net.describe(), "input_dim": net.input_dim,
            "sizes": [net.input_dim] + [W.shape[0] for W in ws],
            "hidden_units": b.units, "entries": b.entries,
            "max_pool_units": b.pool_units, "pass_through_units": b.pass_units}
    return Unrolled(mlp, info)


def unroll(net: Network, *, max_units: int = MAX_UNITS,
           max_entries: int = MAX_ENTRIES) -> Unrolled:
    """The network as an exactly equivalent MLP (flat input of net.input_dim entries in
    (C, H, W) order), memoised on the network. UnsupportedError, in one line, naming the
    first layer that cannot be unrolled or the limit that is exceeded."""
    if isinstance(max_units, bool) or not isinstance(max_units, (int, np.integer)) \
            or max_units < 1:
        raise UnsupportedError(f"unroll_units must be a positive integer, got {max_units!r}")
    if isinstance(max_entries, bool) or not isinstance(max_entries, (int, np.integer)) \
            or max_entries < 1:
        raise UnsupportedError(f"unroll_entries must be a positive integer, got "
                               f"{max_entries!r}")
    net.validate()
    key = ("unroll", int(max_units), int(max_entries))
    return net.memo(__name__, key, lambda: _unroll_sequential(net, max_units, max_entries))


__all__ = ["MAX_ENTRIES", "MAX_UNITS", "Unrolled", "conv_matrix", "pool_windows", "unroll"]
