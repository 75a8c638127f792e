"""Exact unrolling of a sequential network or a ReLU computation graph into a plain MLP
(the same function).

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
an unflattened input. GroupSort layers stay GroupSort activations, or (`sorts="relu"`, for
ReLU-only methods) become their sorting network of comparators, each comparator (i, j) as
min = a_i - relu(a_i - a_j), max = a_j + relu(a_i - a_j), one ReLU layer per round.

Graphs (residual sums `Add`, `Concat`, `BatchNorm`): every value still needed later crosses
each activation layer beside it as ReLU units (relu(x) or relu(x) - relu(-x) as above), so
a sum x + g(x) is a combination of units of one layer; this needs that layer to be a ReLU
layer (graphs with other activations are refused).

The matrices are dense; `MAX_UNITS` (hidden units) and `MAX_ENTRIES` (matrix entries, all
layers together) bound the size, above which `unroll` refuses in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UnsupportedError
from .network import (
    ACTIVATIONS,
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
class _Value:
    """A value not yet written as a layer: A @ s + c, s the outputs of the last activation
    layer (or the input); A None is the identity (then c is 0)."""

    A: np.ndarray | None
    c: np.ndarray

    @property
    def size(self) -> int:
        return self.c.size

    def matrix(self) -> np.ndarray:
        return np.eye(self.size) if self.A is None else self.A

    def row_nonneg(self, src_nonneg: np.ndarray) -> np.ndarray:
        """Rows provably >= 0: non-negative coefficients on non-negative sources only, and a
        non-negative offset."""
        if self.A is None:
            return src_nonneg.copy()
        A = self.A
        ok = ~np.any(A[:, ~src_nonneg] != 0, axis=1) & np.all(A >= 0, axis=1)
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
    """Collects the MLP's layers, counting hidden units and matrix entries. `live` holds the
    values still needed (graph node ids), all over the same source: every activation layer
    carries the other live values through unchanged (as ReLU units)."""

    def __init__(self, n: int, max_units: int, max_entries: int, what: str) -> None:
        self.layers: list[Any] = []
        self.units = self.entries = self.pass_units = self.pool_units = 0
        self.sort_units = 0
        self.max_units, self.max_entries, self.what = int(max_units), int(max_entries), what
        self.live: dict[int, _Value] = {0: _Value(None, np.zeros(n))}
        self.src_nonneg = np.zeros(n, dtype=bool)

    @property
    def src_size(self) -> int:
        return self.src_nonneg.size

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

    def layer(self, rows: list[tuple[np.ndarray, np.ndarray]], act: Any,
              carry: list[int], nonneg_out: bool) -> list[np.ndarray]:
        """One activation layer: the pre-activation blocks `rows` (matrices over the source,
        offsets) under `act`, and the live values `carry` passed through (relu(x) for rows
        >= 0, relu(x) - relu(-x) otherwise; needs act = relu). Re-expresses the carried
        values over the new outputs and returns the unit indices of each block."""
        if carry and not (isinstance(act, Activation) and act.name == "relu"):
            raise UnsupportedError(f"unrolling {self.what}: values must pass a "
                                   f"{getattr(act, 'name', 'GroupSort')} layer unchanged, "
                                   "which only ReLU layers allow")
        Ws, bs, blocks = [], [], []
        n = 0
        for A, c in rows:
            Ws.append(A)
            bs.append(c)
            blocks.append(np.arange(n, n + c.size))
            n += c.size
        ends: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for key in carry:
            v = self.live[key]
            keep = v.row_nonneg(self.src_nonneg)
            neg = np.flatnonzero(~keep)
            A = v.matrix()
            Ws += [A, -A[neg]]
            bs += [v.c, -v.c[neg]]
            ends[key] = (np.arange(n, n + v.size), n + v.size + np.arange(neg.size), neg)
            n += v.size + neg.size
            self.pass_units += v.size + neg.size
        self.check(n, self.src_size, n)
        self.emit(np.vstack(Ws) if Ws else np.zeros((0, self.src_size)),
                  np.concatenate(bs) if bs else np.zeros(0), act)
        for key, (pos, negpos, neg) in ends.items():
            size = pos.size
            S = np.zeros((size, n))
            S[np.arange(size), pos] = 1.0
            S[neg, negpos] = -1.0
            self.live[key] = _Value(S, np.zeros(size))
        nonneg = np.ones(n, dtype=bool)
        if not nonneg_out:
            for blk in blocks:
                nonneg[blk] = False
        self.src_nonneg = nonneg
        return blocks

    def select(self, units: np.ndarray) -> _Value:
        S = np.zeros((units.size, self.src_size))
        S[np.arange(units.size), units] = 1.0
        return _Value(S, np.zeros(units.size))

    def materialize(self) -> None:
        """Carry every live value through a ReLU layer: they become +-1 selections of its
        outputs (with disjoint supports), after which sums and products by them are exact."""
        self.layer([], Activation("relu"), list(self.live), True)

    def compose(self, v: _Value, M: np.ndarray, b: np.ndarray) -> _Value | None:
        """x -> M x + b applied to the value, when exact."""
        if v.A is None:
            return _Value(np.array(M, dtype=np.float64), np.array(b, dtype=np.float64))
        self.check(M.shape[0], v.A.shape[1])
        A = _exact_product(M, v.A)
        c0 = _exact_product(M, v.c) if A is not None else None
        c = _exact_add(c0, np.asarray(b, np.float64)) if c0 is not None else None
        if A is None or c is None:
            return None
        return _Value(A, c)

    def linear(self, key: int, M: np.ndarray, b: np.ndarray) -> _Value:
        out = self.compose(self.live[key], M, b)
        if out is None:
            self.materialize()
            out = self.compose(self.live[key], M, b)
            if out is None:  # a +-1 selection times M is exact unless it underflows
                raise UnsupportedError(f"unrolling {self.what}: a weight underflows float64")
        return out

    def combine(self, keys: tuple[int, ...], coeffs: tuple[float, ...], offset: float
                ) -> _Value:
        """sum_i coeffs[i] value_i + offset, when exact (after carrying the values through a
        ReLU layer if need be)."""
        for attempt in range(2):
            A = np.zeros((self.live[keys[0]].size, self.src_size))
            c = np.full(A.shape[0], float(offset))
            ok = True
            for key, coef in zip(keys, coeffs):
                v = self.live[key]
                part = self.compose(v, np.eye(v.size) * coef, np.zeros(v.size)) \
                    if coef != 1.0 else _Value(v.matrix(), v.c)
                A2 = None if part is None else _exact_add(A, part.A)
                c2 = None if part is None else _exact_add(c, part.c)
                if A2 is None or c2 is None:
                    ok = False
                    break
                A, c = A2, c2
            if ok:
                return _Value(A, c)
            if attempt == 0:
                self.materialize()
        raise UnsupportedError(f"unrolling {self.what}: a sum with coefficients "
                               f"{', '.join(f'{x:g}' for x in coeffs)} is not exact in float64")

    def activation(self, key: int, act: Any, carry: list[int]) -> _Value:
        v = self.live[key]
        nonneg = isinstance(act, Activation) and act.name in NON_NEGATIVE
        (blk,) = self.layer([(v.matrix(), v.c)], act, carry, nonneg)
        return self.select(blk)

    def gadgets(self, cur: int, rows: list[tuple[tuple[int, float], ...]],
                combos: list[list[tuple[int, float]]], carry: list[int]) -> _Value:
        """One ReLU layer of units relu(sum of +-entries of value `cur`) (`rows`: (entry,
        sign) terms per unit), replacing `cur`; returns the value whose entries are the
        +-combinations `combos` ((unit, sign) terms) of those units."""
        D = np.zeros((len(rows), self.live[cur].size))
        for u, terms in enumerate(rows):
            for r, sign in terms:
                D[u, r] = sign
        pre = self.linear(cur, D, np.zeros(len(rows)))
        del self.live[cur]
        (blk,) = self.layer([(pre.matrix(), pre.c)], Activation("relu"), carry, True)
        G = np.zeros((len(combos), self.src_size))
        for i, terms in enumerate(combos):
            for u, sign in terms:
                G[i, blk[u]] = sign
        return _Value(G, np.zeros(len(combos)))

    def max_windows(self, key: int, windows: list[np.ndarray], carry: list[int]) -> _Value:
        """The maximum over each window (a list of indices into the value): a tree of
        pairwise maxima, one ReLU layer per level."""
        items = [list(map(int, w)) for w in windows]
        cur = -1  # the value being pooled, kept in `live` under a free key
        self.live[cur] = self.live[key]
        while any(len(it) > 1 for it in items):
            nonneg = self.live[cur].row_nonneg(self.src_nonneg)
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
                    combos.append([(len(rows) - 1, 1.0)] + _through(b, nonneg, rows))  # + b
                    new.append(len(combos) - 1)
                if len(it) % 2:
                    combos.append(_through(it[-1], nonneg, rows))
                    new.append(len(combos) - 1)
                new_items.append(new)
            self.live[cur] = self.gadgets(cur, rows, combos, carry)
            self.pool_units += len(rows)
            items = new_items
        v = self.live.pop(cur)
        rows_sel = np.array([it[0] for it in items], dtype=np.int64)
        return _Value(v.matrix()[rows_sel], v.c[rows_sel])


    def sort_rounds(self, key: int, rounds: list[list[tuple[int, int]]], carry: list[int]
                    ) -> _Value:
        """A sorting network on the value: per round of disjoint comparators (i, j), one
        ReLU layer with r = relu(a_i - a_j), a_i <- a_i - r (the minimum), a_j <- a_j + r
        (the maximum); every entry also passes the layer unchanged (`_through`)."""
        cur = -1
        # held under `cur` only, unless needed later (a materialisation carries every value)
        self.live[cur] = self.live[key] if key in carry else self.live.pop(key)
        for rnd in rounds:
            nonneg = self.live[cur].row_nonneg(self.src_nonneg)
            size = self.live[cur].size
            rows: list[tuple[tuple[int, float], ...]] = []
            combos = [_through(r, nonneg, rows) for r in range(size)]
            for i, j in rnd:
                rows.append(((i, 1.0), (j, -1.0)))
                combos[i].append((len(rows) - 1, -1.0))
                combos[j].append((len(rows) - 1, 1.0))
            self.live[cur] = self.gadgets(cur, rows, combos, carry)
            self.sort_units += len(rnd)
        return self.live.pop(cur)


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


def _unroll(net: Network, max_units: int, max_entries: int, sorts: str) -> Unrolled:
    """Walk the nodes (a sequential network's chain, or a graph's nodes) in order."""
    nodes = net.as_nodes()
    shapes = net.shapes()  # indexed by node id, 0 the input
    what = "this graph" if net.is_graph else "this network"
    b = _Builder(net.input_dim, max_units, max_entries, what)
    last_use: dict[int, int] = {}
    for k, node in enumerate(nodes, start=1):
        for i in node.inputs:
            last_use[i] = k
    out_id = len(nodes)
    last_use[out_id] = out_id + 1
    swapped: set[int] = set()
    for k, node in enumerate(nodes, start=1):
        if k in swapped:
            continue
        for key in [key for key in b.live if last_use.get(key, 0) < k]:
            del b.live[key]
        op, ins = node.op, node.inputs
        shape = shapes[ins[0]]
        where = f"{'node' if net.is_graph else 'layer'} {k if net.is_graph else k - 1} " \
                f"({getattr(op, 'type_name', type(op).__name__)})"

        out_key = k

        def carry(after: int) -> list[int]:
            return [key for key in b.live if key >= 0 and last_use.get(key, 0) > after]

        if isinstance(op, Affine):
            value = b.linear(ins[0], op.W, op.b)
        elif isinstance(op, Conv2d):
            b.check(int(np.prod(shapes[k])), int(np.prod(shape)))
            M = conv_matrix(op, shape)
            value = b.linear(ins[0], M, np.repeat(op.bias, M.shape[0] // op.bias.size))
        elif isinstance(op, AvgPool2d):
            b.check(int(np.prod(shapes[k])), int(np.prod(shape)))
            value = b.linear(ins[0], _avgpool_matrix(op, shape, where),
                             np.zeros(int(np.prod(shapes[k]))))
        elif isinstance(op, BatchNorm):
            per = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            value = b.linear(ins[0], np.diag(np.repeat(op.scale, per)),
                             np.repeat(op.shift, per))
        elif isinstance(op, Flatten):
            value = b.live[ins[0]]
        elif isinstance(op, Add):
            value = b.combine(ins, op.coeffs, op.offset)
        elif isinstance(op, Concat):
            blocks, offset = [], 0
            for i in ins:
                size = int(np.prod(shapes[i]))
                blocks.append(np.arange(offset, offset + size).reshape(shapes[i]))
                offset += size
            perm = np.concatenate(blocks, axis=op.axis).ravel()
            vals = [b.live[i] for i in ins]
            value = _Value(np.vstack([v.matrix() for v in vals])[perm],
                           np.concatenate([v.c for v in vals])[perm])
        elif isinstance(op, MaxPool2d):
            nxt = nodes[k] if k < len(nodes) else None
            if (nxt is not None and isinstance(nxt.op, Activation)
                    and nxt.op.name in NON_NEGATIVE and nxt.inputs == (k,)
                    and last_use.get(k) == k + 1):
                # a monotone activation commutes with max pooling: relu(max(a, b)) =
                # max(relu(a), relu(b)); the pooled values are then >= 0 (fewer units)
                b.live[-2] = b.activation(ins[0], nxt.op, carry(k))
                value = b.max_windows(-2, pool_windows(op, shape), carry(k))
                del b.live[-2]
                swapped.add(k + 1)
                out_key = k + 1
            else:
                value = b.max_windows(ins[0], pool_windows(op, shape), carry(k))
        elif isinstance(op, GroupSort):
            if len(shape) != 1:
                raise UnsupportedError(f"{where}: GroupSort on an input of shape {shape} "
                                       "does not unroll (its groups are not contiguous)")
            if sorts == "relu":
                value = b.sort_rounds(ins[0], op.comparator_rounds(shape[0]), carry(k))
            else:
                value = b.activation(ins[0], op, carry(k))
        elif isinstance(op, Activation):
            if op.name not in ACTIVATIONS:
                raise UnsupportedError(f"{where}: activation {op.name} is not one of an "
                                       f"MLP's ({', '.join(ACTIVATIONS)})")
            value = b.activation(ins[0], op, carry(k))
        else:
            raise UnsupportedError(f"{where}: cannot be unrolled into an MLP")
        b.live[out_key] = value
    v = b.live[out_id]
    b.emit(v.matrix(), v.c, None)
    mlp = Network(tuple(b.layers), (net.input_dim,)).validate()
    ws = [layer.W for layer in mlp.layers if isinstance(layer, Affine)]
    info = {"from": net.describe(), "input_dim": net.input_dim,
            "sizes": [net.input_dim] + [W.shape[0] for W in ws],
            "hidden_units": b.units, "entries": b.entries,
            "max_pool_units": b.pool_units, "pass_through_units": b.pass_units}
    if sorts == "relu" and net.has_groupsort:
        info["comparator_units"] = b.sort_units
    return Unrolled(mlp, info)


def unroll(net: Network, *, max_units: int = MAX_UNITS, max_entries: int = MAX_ENTRIES,
           sorts: str = "keep") -> Unrolled:
    """The network as an exactly equivalent MLP (flat input of net.input_dim entries in
    (C, H, W) order), memoised on the network. GroupSort layers stay GroupSort (`sorts`
    "keep") or become ReLU comparators ("relu"). UnsupportedError, in one line, naming the
    first layer that cannot be unrolled or the limit that is exceeded."""
    if sorts not in ("keep", "relu"):
        raise UnsupportedError(f"sorts must be 'keep' or 'relu', got {sorts!r}")
    if isinstance(max_units, bool) or not isinstance(max_units, (int, np.integer)) \
            or max_units < 1:
        raise UnsupportedError(f"unroll_units must be a positive integer, got {max_units!r}")
    if isinstance(max_entries, bool) or not isinstance(max_entries, (int, np.integer)) \
            or max_entries < 1:
        raise UnsupportedError(f"unroll_entries must be a positive integer, got "
                               f"{max_entries!r}")
    net.validate()
    key = ("unroll", int(max_units), int(max_entries), sorts)
    return net.memo(__name__, key, lambda: _unroll(net, max_units, max_entries, sorts))


__all__ = ["MAX_ENTRIES", "MAX_UNITS", "Unrolled", "conv_matrix", "pool_windows", "unroll"]
