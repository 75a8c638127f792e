"""LipSDP with linear bypasses (GroupSort/MaxMin MLPs, and any network held as layers or as
a graph): the matrix inequality, its builder and its certificate.

A MaxMin pair (a, b) -> (min, max) is linear in (a, b) and r = relu(a - b):
min(a, b) = a - r and max(a, b) = b + r (sum preserving, a permutation on each side of
a = b). A larger group is sorted by a sorting network of such comparators
(`GroupSort.comparator_rounds`), one stage of disjoint comparators at a time. So every
hidden value of the network is a linear function of v = (x, r_1, ..., r_S), the input and
the outputs of the S stages of slope-restricted units (ReLU with slopes [0, 1] for the
comparators; an elementwise activation's own slopes for an elementwise layer, whose
output then replaces its input), and the unit inputs of stage s are u_s = B_s v, with B_s
reading only the blocks before r_s. The incremental quadratic constraint of slope
restriction (Fazlyab et al., NeurIPS 2019) holds for each unit j of stage s:
2 (dr_j - a du_j)(b du_j - dr_j) >= 0. With multipliers t >= 0 and the output map f = C v,

    M(rho, T) = C^T C - rho E_00 + sum_s Q_s(T_s)  <=  0,
    Q_s = -2ab B_s^T T_s B_s + (a + b)(B_s^T T_s S_s + S_s^T T_s B_s) - 2 S_s^T T_s S_s

(E_00 the input block, S_s selecting r_s) proves ||f(x) - f(y)||^2 <= rho ||x - y||^2 by the
S-procedure. The linear bypass (a - r, b + r) is what keeps MaxMin's constant at 1: for one
MaxMin layer t = 1 gives M = C^T C - I on the input exactly (the constraint is the
per-pair identity ||d(min, max)||^2 = ||d(a, b)||^2 - 2 dr (da - db - dr)), which a plain
residual-ReLU reading of the layer misses. Pauli, Havens, Araujo, Garg, Khorrami,
Allgöwer & Hu, "Novel quadratic constraints for extending LipSDP beyond slope-restricted
activations", ICLR 2024, derive GroupSort/MaxMin constraints from the same properties (sum
preservation, 1-Lipschitz groups); the constraints here are derived as above.

Certificate (`certify_groupsort`): B_s and C are products of the weights, formed in
float64 with a componentwise bound on their error (Higham, 3.5: |fl(W A) - W A| <=
gamma_n |W| |A|, propagated through the layers); for fixed multipliers the least rho comes
from a Schur complement, and -M(rho', T) > 0 at a slightly larger rho' is proven by the
rounding-aware Cholesky test of numerics/lmi.py (Rump, BIT 2006) with the entry errors of
the float64 matrix and of B_s, C bounded in the Frobenius norm.

Networks (`graph_lmi_data`, the one builder; a GroupSort MLP is its sequential case): the
same holds for any network whose ops are linear maps and slope-restricted units. A
node's value is kept as a matrix over v with its error bound: linear ops (Affine, Conv2d,
AvgPool2d, BatchNorm, Flatten) are products, Add a weighted sum, Concat a permutation of
rows; an elementwise activation is a stage of units (value r), max pooling a tree of
max(a, b) = b + relu(a - b) over each window (a stage per level, value b + r), GroupSort
a sorting network along the first axis. Multipliers a solver leaves slightly outside the
cone are mixed with `anchor_multipliers` (a feasible point by a backward recursion) and
certified again (`repair_groupsort`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnsupportedError
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
    Network,
)
from .lmi import (
    CERT_ATTEMPTS,
    CERT_GROWTH,
    CERT_REL_MARGIN,
    Certificate,
    clip_multipliers,
    mix_until_certified,
)
from .psd import certify_positive_definite
from .rounding import UNIT_ROUNDOFF, gamma

# Bounds computed from non-negative float64 terms are inflated by this (their own rounding,
# at most a few hundred u relative for the sizes handled here).
BOUND_INFLATION = 1.01
# Default and hard limits of `graph_lmi_data`: the LMI side, and the entries of one value's
# dense matrix (rows of a node times the LMI side).
DEFAULT_MAX_DIM = 6000
MAX_ENTRIES = 20_000_000


@dataclass(frozen=True)
class Stage:
    """One stage of slope-restricted units: inputs u = B v (B of shape (m, N), in float64),
    slopes [a, b], error bound R >= |B_computed - B_exact| entrywise, outputs the block of v
    at columns offset .. offset + m."""

    B: np.ndarray
    R: np.ndarray
    slopes: tuple[float, float]
    offset: int
    what: str  # "sort", "maxpool" or the elementwise activation's name

    @property
    def size(self) -> int:
        return int(self.B.shape[0])


@dataclass(frozen=True, eq=False)
class SortLMIData:
    """The instance: input size, stages, the output map C (p, N) with its error bound."""

    n0: int
    stages: tuple[Stage, ...]
    C: np.ndarray
    RC: np.ndarray
    inner: int  # the longest inner product summed in B, C and M

    @property
    def dim(self) -> int:
        return int(self.C.shape[1])

    @property
    def num_vars(self) -> int:
        return sum(s.size for s in self.stages)


def _product(W: Any, A: np.ndarray, RA: np.ndarray, RW: Any = None
             ) -> tuple[np.ndarray, np.ndarray, int]:
    """fl(W A), a bound on |fl(W A) - W_exact A_exact| given |A - A_exact| <= RA (and
    |W - W_exact| <= RW when given), and the length of the inner products summed. W dense
    or scipy-sparse (then only a row's stored entries are summed)."""
    import scipy.sparse as sp

    P = np.asarray(W @ A)
    if sp.issparse(W):
        aW = abs(W)
        inner = int(np.diff(W.tocsr().indptr).max(initial=0)) + 1
    else:
        aW = np.abs(W)
        inner = W.shape[1] + 1
    R = gamma(inner) * np.asarray(aW @ np.abs(A)) + np.asarray(aW @ RA)
    if RW is not None:
        R = R + np.asarray(RW @ (np.abs(A) + RA))
    return P, R * BOUND_INFLATION, inner


def _act_what(op: Any) -> str:
    return getattr(op, "name", None) or getattr(op, "type_name", type(op).__name__)


def _node_units(op: Any, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    """Slope-restricted units the builder creates for one op (0 for a linear op)."""
    from ..unroll import pool_windows

    if isinstance(op, Activation):
        return int(np.prod(out_shape))
    if isinstance(op, GroupSort):
        rest = int(np.prod(in_shape[1:]))
        return rest * sum(len(r) for r in op.comparator_rounds(in_shape[0]))
    if isinstance(op, MaxPool2d):
        return sum(len(w) - 1 for w in pool_windows(op, in_shape))
    return 0


def lmi_dim(net: Network) -> int:
    """The side n0 + (all units) of the LMI of `graph_lmi_data`, from the shapes alone."""
    shapes = net.shapes()
    return net.input_dim + sum(_node_units(node.op, shapes[node.inputs[0]], shapes[k])
                               for k, node in enumerate(net.as_nodes(), start=1))


class _Walk:
    """Builds the instance node by node: every value V (rows: the node's entries in (C, H, W)
    order, columns: v) with RV >= |V - V_exact|; biases and offsets drop out (the LMI
    bounds differences)."""

    def __init__(self, n0: int, N: int) -> None:
        self.N, self.offset, self.inner = N, n0, 1
        self.stages: list[Stage] = []

    def unit_block(self, m: int) -> np.ndarray:
        cols = self.offset + np.arange(m)
        self.offset += m
        return cols

    def product(self, W: Any, V: np.ndarray, RV: np.ndarray, RW: Any = None
                ) -> tuple[np.ndarray, np.ndarray]:
        P, R, inner = _product(W, V, RV, RW)
        self.inner = max(self.inner, inner)
        return P, R

    def activation(self, V: np.ndarray, RV: np.ndarray, slopes: tuple[float, float],
                   what: str) -> tuple[np.ndarray, np.ndarray]:
        """Units r = act(V v): the value is r itself (exact selection)."""
        m = V.shape[0]
        cols = self.unit_block(m)
        self.stages.append(Stage(V, RV, slopes, int(cols[0]) if m else self.offset, what))
        out = np.zeros((m, self.N))
        out[np.arange(m), cols] = 1.0
        return out, np.zeros_like(out)

    def comparators(self, V: np.ndarray, RV: np.ndarray, i: np.ndarray, j: np.ndarray,
                    what: str) -> np.ndarray:
        """One stage of units r = relu(V_i - V_j) over pairs of rows (i, j); returns the
        columns of r (zero in every value so far, so that writing +-1 there is exact)."""
        B = V[i] - V[j]
        RB = (RV[i] + RV[j] + UNIT_ROUNDOFF * np.abs(B)) * BOUND_INFLATION
        cols = self.unit_block(len(i))
        self.stages.append(Stage(B, RB, (0.0, 1.0), int(cols[0]), what))
        return cols

    def groupsort(self, op: GroupSort, V: np.ndarray, RV: np.ndarray,
                  shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """A sorting network along the first axis (groups of channels at each position):
        each comparator of a round (disjoint pairs) replaces row i by V_i - r (the minimum)
        and row j by V_j + r (the maximum); the error bound is unchanged."""
        rest = int(np.prod(shape[1:]))
        pos = np.arange(rest)
        for rnd in op.comparator_rounds(shape[0]):
            i = np.concatenate([c[0] * rest + pos for c in rnd])
            j = np.concatenate([c[1] * rest + pos for c in rnd])
            cols = self.comparators(V, RV, i, j, "sort")
            V = V.copy()
            V[i, cols] = -1.0
            V[j, cols] = 1.0
        return V, RV

    def maxpool(self, windows: list[np.ndarray], V: np.ndarray, RV: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """The maximum over each window as a tree of max(a, b) = b + relu(a - b): one stage
        per level, the pairs of all windows together (windows may overlap: each level's
        values are new rows, one per item of each window)."""
        items = [list(map(int, w)) for w in windows]
        while any(len(it) > 1 for it in items):
            a: list[int] = []
            b: list[int] = []
            src: list[int] = []  # the row each new item starts from
            unit: list[int] = []  # its unit (-1: an odd item passing unchanged)
            new_items = []
            for it in items:
                new = []
                for k in range(0, len(it) - 1, 2):
                    a.append(it[k])
                    b.append(it[k + 1])
                    new.append(len(src))
                    src.append(it[k + 1])
                    unit.append(len(a) - 1)
                if len(it) % 2:
                    new.append(len(src))
                    src.append(it[-1])
                    unit.append(-1)
                new_items.append(new)
            cols = self.comparators(V, RV, np.array(a, dtype=np.int64),
                                    np.array(b, dtype=np.int64), "maxpool")
            rows, units = np.array(src, dtype=np.int64), np.array(unit, dtype=np.int64)
            V, RV = V[rows], RV[rows]
            has = units >= 0
            V[np.flatnonzero(has), cols[units[has]]] = 1.0
            items = new_items
        rows = np.array([it[0] for it in items], dtype=np.int64)
        return V[rows], RV[rows]


def _scale_rows(s: np.ndarray, V: np.ndarray, RV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """diag(s) V with its error bound (one rounded product per entry)."""
    P = s[:, None] * V
    R = (UNIT_ROUNDOFF * np.abs(P) * (1 + 2 * UNIT_ROUNDOFF) + np.abs(s)[:, None] * RV)
    return P, R * BOUND_INFLATION


def graph_lmi_data(net: Network, *, max_dim: int | None = DEFAULT_MAX_DIM,
                   what: str = "lipsdp-graph") -> SortLMIData:
    """The instance of any network `Network` holds (sequential or graph): linear ops
    (Affine, Conv2d, AvgPool2d, BatchNorm, Flatten, Add, Concat) compose the values, and
    each elementwise activation, GroupSort comparator and max-pooling comparator is one
    slope-restricted unit. UnsupportedError (one line) for other ops or above max_dim."""
    import scipy.sparse as sp

    from ..unroll import conv_matrix, pool_windows

    net.validate()
    nodes, shapes = net.as_nodes(), net.shapes()
    n0 = net.input_dim
    N = lmi_dim(net)
    if max_dim is not None and N > max_dim:
        raise UnsupportedError(f"{what}: the LMI would have side {N:,} (limit {max_dim:,}: "
                               "option max_dim)")
    biggest = max(int(np.prod(s)) for s in shapes)
    if biggest * N > MAX_ENTRIES:
        raise UnsupportedError(f"{what}: a value of {biggest:,} entries over {N:,} columns "
                               f"exceeds {MAX_ENTRIES:,} matrix entries")
    walk = _Walk(n0, N)
    V0 = np.zeros((n0, N))
    V0[np.arange(n0), np.arange(n0)] = 1.0
    vals: dict[int, tuple[np.ndarray, np.ndarray]] = {0: (V0, np.zeros_like(V0))}
    last_use = {i: k for k, node in enumerate(nodes, start=1) for i in node.inputs}
    for k, node in enumerate(nodes, start=1):
        op, ins = node.op, node.inputs
        shape = shapes[ins[0]]
        V, RV = vals[ins[0]]
        where = f"{what}: {'node' if net.is_graph else 'layer'} " \
                f"{k if net.is_graph else k - 1} ({_act_what(op)})"
        if isinstance(op, Affine):
            out = walk.product(op.W, V, RV)
        elif isinstance(op, Conv2d):
            out = walk.product(sp.csr_matrix(conv_matrix(op, shape)), V, RV)
        elif isinstance(op, AvgPool2d):
            windows = pool_windows(op, shape)
            size = op.kernel[0] * op.kernel[1]
            rows = np.repeat(np.arange(len(windows)), [w.size for w in windows])
            M = sp.csr_matrix((np.full(rows.size, 1.0 / size), (rows, np.concatenate(windows))),
                              shape=(len(windows), V.shape[0]))
            # 1/size is rounded once unless size is a power of two
            RW = None if size & (size - 1) == 0 else abs(M) * UNIT_ROUNDOFF
            out = walk.product(M, V, RV, RW)
        elif isinstance(op, BatchNorm):
            per = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            out = _scale_rows(np.repeat(op.scale, per), V, RV)
        elif isinstance(op, Flatten):
            out = (V, RV)
        elif isinstance(op, Add):
            terms = [(c, *vals[i]) for c, i in zip(op.coeffs, ins)]
            P = sum(c * Vi for c, Vi, _ in terms)
            absum = sum(abs(c) * np.abs(Vi) for c, Vi, _ in terms)
            err = sum(abs(c) * Ri for c, _, Ri in terms)
            walk.inner = max(walk.inner, len(terms) + 1)
            out = (P, (gamma(len(terms) + 1) * absum + err) * BOUND_INFLATION)
        elif isinstance(op, Concat):
            blocks, start = [], 0
            for i in ins:
                size = int(np.prod(shapes[i]))
                blocks.append(np.arange(start, start + size).reshape(shapes[i]))
                start += size
            perm = np.concatenate(blocks, axis=op.axis).ravel()
            out = (np.vstack([vals[i][0] for i in ins])[perm],
                   np.vstack([vals[i][1] for i in ins])[perm])
        elif isinstance(op, MaxPool2d):
            out = walk.maxpool(pool_windows(op, shape), V, RV)
        elif isinstance(op, GroupSort):
            out = walk.groupsort(op, V, RV, shape)
        elif isinstance(op, Activation):
            out = walk.activation(V, RV, op.slopes, op.name)
        else:
            raise UnsupportedError(f"{where}: not supported (ops: linear, conv2d, avgpool2d, "
                                   "maxpool2d, batchnorm, flatten, add, concat, groupsort, "
                                   "elementwise activations)")
        vals[k] = out
        for i in set(ins):
            if last_use.get(i, 0) <= k and i != len(nodes):
                vals.pop(i, None)
    if walk.offset != N:  # the unit count of lmi_dim and the walk must agree
        raise AssertionError(f"{what}: {walk.offset} columns written, {N} counted")
    C, RC = vals[len(nodes)]
    stages = tuple(walk.stages)
    inner = max(walk.inner, C.shape[0], max((s.size for s in stages), default=1))
    if not (np.all(np.isfinite(C)) and all(np.all(np.isfinite(s.B)) for s in stages)):
        raise UnsupportedError(f"{what}: the products of the weights overflow float64")
    return SortLMIData(n0, stages, C, RC, inner)


def network_sort_data(net: Network) -> SortLMIData:
    """The instance of an MLP whose hidden activations are GroupSort or elementwise (slope
    restricted): stages in order, C the output map, all as functions of v."""
    net.mlp(groupsort=True)  # an MLP: UnsupportedError otherwise
    return graph_lmi_data(net, max_dim=None, what="lipsdp-groupsort")


def split_multipliers(data: SortLMIData, t: np.ndarray) -> list[np.ndarray]:
    """One multiplier vector per stage from the solver's flat vector."""
    t = np.asarray(t, np.float64).ravel()
    out, pos = [], 0
    for s in data.stages:
        out.append(t[pos:pos + s.size].copy())
        pos += s.size
    return out


def lmi_matrix(data: SortLMIData, T: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """X = M(0, T) in float64 and a matrix bounding the absolute terms summed in each
    entry (from the computed B_s, C)."""
    C = data.C
    X = C.T @ C
    Xabs = np.abs(C).T @ np.abs(C)
    for s, t in zip(data.stages, T):
        a, b = s.slopes
        B, aB = s.B, np.abs(s.B)
        cols = s.offset + np.arange(s.size)
        if a * b != 0.0:
            X -= 2 * a * b * (B.T * t) @ B
            Xabs += 2 * abs(a * b) * (aB.T * t) @ aB
        BT = (a + b) * (B.T * t)  # (N, m): column j is (a + b) t_j B_j
        X[:, cols] += BT
        X[cols, :] += BT.T
        Xabs[:, cols] += np.abs(BT)
        Xabs[cols, :] += np.abs(BT).T
        X[cols, cols] -= 2 * t
        Xabs[cols, cols] += 2 * t
    return X, Xabs


def input_error(data: SortLMIData, T: list[np.ndarray]) -> np.ndarray:
    """A bound on |M_exact(0, T) - M(0, T) formed from the computed B_s, C| entrywise (the
    errors of B_s and C themselves)."""
    C, RC = data.C, data.RC
    aC = np.abs(C)
    E = RC.T @ (aC + RC) + aC.T @ RC
    for s, t in zip(data.stages, T):
        a, b = s.slopes
        aB, R = np.abs(s.B), s.R
        cols = s.offset + np.arange(s.size)
        if a * b != 0.0:
            E += 2 * abs(a * b) * ((R.T * t) @ (aB + R) + (aB.T * t) @ R)
        side = abs(a + b) * (R.T * t)
        E[:, cols] += side
        E[cols, :] += side.T
    return E * BOUND_INFLATION


def schur_rho(data: SortLMIData, X: np.ndarray) -> float | None:
    """Least rho with -M(rho, T) >= 0 for X = M(0, T), by a float64 Schur complement over
    the hidden blocks (None when -X_hh is not positive definite): an estimate that
    `certify_groupsort` proves."""
    from scipy.linalg import cho_factor, cho_solve, eigh

    n0 = data.n0
    H = -X[n0:, n0:]
    if H.shape[0] == 0:
        S = X
    else:
        try:
            factor = cho_factor(H, lower=True)
        except np.linalg.LinAlgError:
            return None
        X0h = X[:n0, n0:]
        S = X[:n0, :n0] + X0h @ cho_solve(factor, X0h.T)
    return max(float(eigh((S + S.T) / 2, eigvals_only=True)[-1]), 0.0)


def _round_up_sqrt(x: float) -> float:
    return math.nextafter(math.nextafter(math.sqrt(x), math.inf), math.inf)


def certify_groupsort(data: SortLMIData, multipliers: list[np.ndarray]) -> Certificate:
    """The certified value of fixed multipliers T (clipped to >= 0): -M(rho, T) > 0 proven
    for the exact weights at rho = rho_min (1 + margin) + shift, so L_2 <= sqrt(rho)."""
    T = clip_multipliers(multipliers)
    if len(T) != len(data.stages) or any(t.shape != (s.size,) for t, s in zip(T,
                                                                             data.stages)):
        raise ValueError("one multiplier per unit of every stage is needed")
    X, Xabs = lmi_matrix(data, T)
    if not np.all(np.isfinite(X)):
        return Certificate(False, math.inf, math.inf, reason="the LMI is not finite")
    rho_min = schur_rho(data, X)
    if rho_min is None:
        return Certificate(False, math.inf, math.inf,
                           reason="hidden part of the LMI is not negative definite")
    n0 = data.n0
    # X's own rounding: inner products of length <= inner, then at most 3 + 3 S additions
    rounding = gamma(data.inner + 3 * len(data.stages) + 6) * BOUND_INFLATION
    err_fixed = float(np.linalg.norm(rounding * Xabs + input_error(data, T)))
    idx = np.arange(n0)
    diag = float(np.abs(np.diag(X)).max(initial=0.0))
    margin = CERT_REL_MARGIN
    for attempt in range(1, CERT_ATTEMPTS + 1):
        scale = max(rho_min, diag, 1e-300)
        rho = rho_min * (1 + margin) + margin * scale
        Y = -X
        Y[idx, idx] += rho
        # rho added on the diagonal: one rounding of each of those entries
        error = err_fixed + 2 * UNIT_ROUNDOFF * (rho + diag)
        if certify_positive_definite(Y, error):
            return Certificate(True, rho, _round_up_sqrt(rho), rho_min, attempt)
        margin *= CERT_GROWTH
    return Certificate(False, math.inf, math.inf, rho_min, CERT_ATTEMPTS,
                       reason="Cholesky certificate failed at every margin")


def anchor_multipliers(data: SortLMIData) -> list[np.ndarray]:
    """Multipliers, one value tau_s per stage, whose hidden block of -M is positive definite
    in exact arithmetic (a proposal only: `repair_groupsort` certifies what it returns).

    The hidden part of M is eliminated stage by stage from the last (a recursion in
    the manner of ECLipsE-Fast, Xu & Sivaranjani, NeurIPS 2024, run backwards): with P the
    part of M on the stages not yet eliminated (C_h^T C_h at first), stage s is the
    trailing block (B_s reads earlier stages only), tau_s = lambda_max(P_ss) makes
    P_ss - 2 tau_s I <= -tau_s I, and the Schur complement
    P_<< - 2ab tau_s B_<^T B_< + A_<s (2 tau_s I - P_ss)^{-1} A_<s^T,
    A_<s = P_<s + (a + b) tau_s B_<^T, is the P of the stages before."""
    from scipy.linalg import cho_factor, cho_solve

    n0 = data.n0
    Ch = data.C[:, n0:]
    P = Ch.T @ Ch
    taus = []
    for s in reversed(data.stages):
        k = P.shape[0] - s.size
        Pss = (P[k:, k:] + P[k:, k:].T) / 2
        lam = float(np.linalg.eigvalsh(Pss)[-1])
        tau = lam if lam > 0 else 1e-9 * max(float(np.abs(P).max(initial=0.0)), 1.0)
        taus.append(tau)
        a, b = s.slopes
        Bl = s.B[:, n0:n0 + k]
        Als = P[:k, k:] + (a + b) * tau * Bl.T
        try:
            factor = cho_factor(2 * tau * np.eye(s.size) - Pss)
        except np.linalg.LinAlgError:
            factor = None
        if factor is None:  # rounding at the boundary: double tau
            tau *= 2
            taus[-1] = tau
            Als = P[:k, k:] + (a + b) * tau * Bl.T
            factor = cho_factor(2 * tau * np.eye(s.size) - Pss)
        P = P[:k, :k] - 2 * a * b * tau * (Bl.T @ Bl) + Als @ cho_solve(factor, Als.T)
    return [np.full(s.size, tau) for s, tau in zip(data.stages, reversed(taus))]


def repair_groupsort(data: SortLMIData, multipliers: list[np.ndarray],
                     anchor: list[np.ndarray] | None = None) -> Certificate | None:
    """Certify a mixture (1 - w) T + w T_a of failing multipliers T with the anchor T_a of
    `anchor_multipliers` (as lmi.repair_multipliers does with ECLipsE-Fast's point): the
    least w making the hidden block definite from the generalised eigenvalue mu of the two
    hidden blocks, w = 4 (-mu) / (1 - mu), doubled until certified; None if none is."""
    if not data.stages:
        return None
    anchor = anchor_multipliers(data) if anchor is None else anchor
    T = clip_multipliers(multipliers)
    n0 = data.n0
    H = -lmi_matrix(data, T)[0][n0:, n0:]
    Ha = -lmi_matrix(data, anchor)[0][n0:, n0:]
    if not (np.all(np.isfinite(H)) and np.all(np.isfinite(Ha))):
        return None
    # w = 1 is the anchor itself, certified on its own by the caller
    return mix_until_certified(T, anchor, (H + H.T) / 2, (Ha + Ha.T) / 2,
                               lambda mixed: certify_groupsort(data, mixed),
                               "the anchor multipliers", include_anchor=False)
