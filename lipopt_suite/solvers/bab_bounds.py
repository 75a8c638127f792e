"""Certified node bounds for the branch-and-bound of `bab` (solvers/bab.py).

A node is a box of a *chart* (an affine slice of the homogenised input space, below) with
some neurons forced on or off. Its bounds, batched over nodes in torch float64:

* `preactivation_bounds`: symbolic interval propagation (each pre-activation between two
  affine functions of the chart coordinates, ReLU relaxed by its chord above and a line
  through 0 below, as in Wang et al., "Formal security analysis of neural networks using
  symbolic intervals", USENIX Security 2018), concretised over the box. A neuron counts as
  stable only beyond a margin that covers the float64 rounding of the propagation.
* `interval_backward`: the interval hull of the Jacobians of every activation pattern the
  states allow (free neurons have slope in [alpha, 1]), propagated from the output; its
  norm (`interval_norm`) is an upper bound on the Jacobian norm over the node.
* `completion_bounds`: the free neurons nearest the output take each of their 2^u values in
  turn (u small), the others stay intervals: the exact maximum over the completions when
  every free neuron is enumerated (patterns need not be realisable: still an upper bound).

Every norm is inflated by a proven bound on its float64 error: Jacobian entries computed by
products of the weight matrices err by at most gamma times the absolute product
|W_K| ... |W_0| (Higham, Accuracy and Stability of Numerical Algorithms, 3.5), which is added
entrywise, and eigenvalue-based spectral norms carry a relative margin.

Charts. The global constant is the largest ||J|| over all linear regions of R^n. Writing
x = y / s (s > 0) the pre-activations become positively homogeneous in (y, s) (the biases
are multiplied by s), so each region is a cone; a chart is a box of coordinates xi mapped
affinely to (y, s) that every such cone of interest meets in a full-dimensional set:
* box domain: xi = x, s = 1;
* the cone chart: xi = (y, s) in [-R, R]^n x [0, 1] (every cone with s > 0 meets it);
* faces: the box |x|_inf <= R, and for each axis i and sign the face y_i = +-R, s in [0, 1]
  (the other y_j in [-R, R]): 2n + 1 boxes of dimension n whose images cover R^n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..numerics.rounding import UNIT_ROUNDOFF

# A neuron is stable on a box when its bound clears 0 by this much relative to the absolute
# magnitude bound of its pre-activation: float64 rounding of the propagation is ~1e-13 of it.
STABLE_RTOL = 1e-10
# Relative margin on a float64 eigenvalue-based spectral norm (eigvalsh is backward stable:
# error ~ r u ||G||; this also covers the Gram product, ~ n u ||G||).
EIG_MARGIN = 1e-12
# Meet-in-the-middle maxima: MITM_ELEMENTS pair values at once, over at most 2^MITM_BITS
# patterns of one layer; the completions of a second layer enumerated at most 2^SCREEN_BITS.
MITM_ELEMENTS = 4_000_000
MITM_BITS = 24
SCREEN_BITS = 18
SCREEN_LOW = 16
SCREEN_PAIRS = 2**24  # exact maxima for the survivors only up to this many patterns
SURVIVORS_KEPT = 8192
# Patterns per enumeration batch (elements of the batch's Jacobians).
ENUM_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Net:
    """The MLP as bab sees it: weights (out, in), biases, the negative slope of each hidden
    layer (0 for ReLU), the flat index range of each hidden layer's neurons, and which
    neurons are the identity (`ident`, see `merge_identity_pairs`): always on, never split."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    slopes: tuple[float, ...]
    offsets: tuple[int, ...]
    ident: tuple[np.ndarray, ...] = ()

    @classmethod
    def build(cls, weights: list[np.ndarray], biases: list[np.ndarray], slopes: list[float],
              ident: list[np.ndarray] | None = None) -> Net:
        widths = [W.shape[0] for W in weights[:-1]]
        if ident is None:
            ident = [np.zeros(w, dtype=bool) for w in widths]
        return cls(tuple(np.asarray(W, np.float64) for W in weights),
                   tuple(np.asarray(b, np.float64) for b in biases), tuple(slopes),
                   tuple(int(v) for v in np.concatenate([[0], np.cumsum(widths)])),
                   tuple(np.asarray(m, dtype=bool) for m in ident))

    @property
    def identities(self) -> int:
        return int(sum(int(m.sum()) for m in self.ident))

    @property
    def hidden(self) -> int:
        return len(self.weights) - 1

    @property
    def neurons(self) -> int:
        return self.offsets[-1]

    def layer_of(self, flat: int) -> int:
        return int(np.searchsorted(self.offsets, flat, side="right") - 1)

    def abs_product(self) -> np.ndarray:
        """|W_K| ... |W_0|: entrywise above |J| for every pattern (slopes in [0, 1])."""
        P = np.abs(self.weights[0])
        for W in self.weights[1:]:
            P = np.abs(W) @ P
        return P

    def product_error(self) -> np.ndarray:
        """Entrywise bound on the float64 error of any pattern's computed Jacobian."""
        terms = sum(W.shape[1] + 2 for W in self.weights)
        return 2.0 * terms * UNIT_ROUNDOFF * self.abs_product() / (1 - terms * UNIT_ROUNDOFF)


@dataclass(frozen=True)
class Chart:
    """A box [lo, hi] of coordinates xi with z_0 = A0 xi + c0, s = ts . xi + t0 (the factor of
    the later biases) and y = Ty xi + ty; the input is x = y / s."""

    lo: np.ndarray
    hi: np.ndarray
    A0: np.ndarray
    c0: np.ndarray
    ts: np.ndarray
    t0: float
    Ty: np.ndarray
    ty: np.ndarray
    name: str = "box"

    @property
    def dim(self) -> int:
        return self.lo.size

    def to_x(self, xi: np.ndarray) -> np.ndarray:
        xi = np.atleast_2d(xi)
        return (xi @ self.Ty.T + self.ty) / (xi @ self.ts + self.t0)[:, None]


def box_chart(net: Net, lo: np.ndarray, hi: np.ndarray) -> Chart:
    n = lo.size
    return Chart(lo, hi, net.weights[0], net.biases[0], np.zeros(n), 1.0, np.eye(n), np.zeros(n))


def cone_chart(net: Net, radius: float) -> Chart:
    """xi = (y, s) in [-R, R]^n x [0, 1]: one chart for the whole input space."""
    W0, b0 = net.weights[0], net.biases[0]
    n = W0.shape[1]
    ts = np.zeros(n + 1)
    ts[-1] = 1.0
    return Chart(np.append(-radius * np.ones(n), 0.0), np.append(radius * np.ones(n), 1.0),
                 np.hstack([W0, b0[:, None]]), np.zeros(W0.shape[0]), ts, 0.0,
                 np.hstack([np.eye(n), np.zeros((n, 1))]), np.zeros(n), "cone")


def face_charts(net: Net, radius: float) -> list[Chart]:
    """The box |x|_inf <= R and the 2n faces y_i = +-R (coordinates y_{-i}, s)."""
    W0, b0 = net.weights[0], net.biases[0]
    n = W0.shape[1]
    lo, hi = -radius * np.ones(n), radius * np.ones(n)
    charts = [Chart(lo, hi, W0, b0, np.zeros(n), 1.0, np.eye(n), np.zeros(n), "centre")]
    for i in range(n):
        rest = [j for j in range(n) if j != i]
        flo, fhi = np.append(lo[rest], 0.0), np.append(hi[rest], 1.0)
        ts = np.zeros(n)
        ts[-1] = 1.0
        Ty = np.zeros((n, n))
        Ty[rest, np.arange(n - 1)] = 1.0
        for sign in (1.0, -1.0):
            ty = np.zeros(n)
            ty[i] = sign * radius
            charts.append(Chart(flo, fhi, np.hstack([W0[:, rest], b0[:, None]]),
                                sign * radius * W0[:, i], ts, 0.0, Ty, ty,
                                f"face {'+' if sign > 0 else '-'}x{i}"))
    return charts


# ------------------------------------------------------------------------ pre-activations
@dataclass
class Bounds:
    """Per hidden layer, over a batch of nodes: bounds (B, n_k) and states (0 off, 1 on,
    2 free); `empty` marks nodes whose forced states contradict the bounds."""

    lower: list[torch.Tensor]
    upper: list[torch.Tensor]
    states: list[torch.Tensor]
    empty: torch.Tensor


_TENSORS: dict[tuple[int, str], tuple[np.ndarray, torch.Tensor]] = {}


def _t(a: np.ndarray | float, device: torch.device) -> torch.Tensor:
    """A float64 tensor of `a`, cached for arrays (the same weights are used per batch)."""
    if not isinstance(a, np.ndarray):
        return torch.tensor(a, dtype=torch.float64, device=device)
    key = (id(a), str(device))
    hit = _TENSORS.get(key)
    if hit is None or hit[0] is not a:
        if len(_TENSORS) > 4096:
            _TENSORS.clear()
        hit = (a, torch.tensor(np.asarray(a, np.float64), device=device))
        _TENSORS[key] = hit
    return hit[1]


def _choose(cond: torch.Tensor, yes: float, no: float) -> torch.Tensor:
    """float64 `yes` where cond else `no` (torch.where on two Python floats would give
    float32 and round a leaky slope such as 0.1)."""
    return torch.full(cond.shape, no, dtype=torch.float64, device=cond.device).masked_fill_(
        cond, yes)


def preactivation_bounds(net: Net, chart: Chart, lo: torch.Tensor, hi: torch.Tensor,
                         forced: torch.Tensor) -> Bounds:
    """Symbolic interval bounds of every hidden pre-activation over boxes [lo, hi] (B, d),
    with `forced` (B, N) = -1 free, 0 off, 1 on (the node's split constraints)."""
    dev = lo.device
    mid, rad = (lo + hi) / 2, (hi - lo) / 2
    absx = torch.maximum(lo.abs(), hi.abs())
    ts, t0 = _t(chart.ts, dev), float(chart.t0)
    A0 = _t(chart.A0, dev)
    # z in [L xi + l, U xi + u]; layer 0 is exact
    L = A0.expand(lo.shape[0], *A0.shape)
    U = L
    lc = _t(chart.c0, dev).expand(lo.shape[0], -1)
    uc = lc
    lowers, uppers, states = [], [], []
    empty = torch.zeros(lo.shape[0], dtype=torch.bool, device=dev)
    for k in range(net.hidden):
        zl = (L @ mid[:, :, None])[..., 0] - (L.abs() @ rad[:, :, None])[..., 0] + lc
        zh = (U @ mid[:, :, None])[..., 0] + (U.abs() @ rad[:, :, None])[..., 0] + uc
        # the absolute size of the terms summed: their float64 rounding is ~1e-15 of it
        mag = torch.maximum((L.abs() @ absx[:, :, None])[..., 0] + lc.abs(),
                            (U.abs() @ absx[:, :, None])[..., 0] + uc.abs())
        f = forced[:, net.offsets[k]:net.offsets[k + 1]]
        margin = STABLE_RTOL * mag
        on = (zl > margin) | (f == 1) | torch.as_tensor(net.ident[k], device=dev)
        off = ((zh < -margin) | (f == 0)) & ~on
        empty |= ((f == 1) & (zh < -margin)).any(-1) | ((f == 0) & (zl > margin)).any(-1)
        st = torch.full_like(zl, 2, dtype=torch.int8)
        st[on], st[off] = 1, 0
        zl = torch.where(f == 1, zl.clamp_min(0), zl)
        zh = torch.where(f == 0, zh.clamp_max(0), zh)
        lowers.append(zl)
        uppers.append(zh)
        states.append(st)
        if k == net.hidden - 1:
            break
        a = net.slopes[k]
        free = st == 2
        # relaxation: on -> z, off -> a z, free -> below mu z, above the chord
        width = (zh - zl).clamp_min(1e-300)
        lam = torch.where(free, (zh - a * zl) / width, _choose(on, 1.0, a))
        ofs = torch.where(free, a * zl - lam * zl, 0.0)
        mu = torch.where(free, _choose(zh > -zl, 1.0, a), _choose(on, 1.0, a))
        aL, al = mu[..., None] * L, mu * lc
        aU, au = lam[..., None] * U, lam * uc + ofs
        W = _t(net.weights[k + 1], dev)
        Wp, Wn = W.clamp_min(0), W.clamp_max(0)
        b = _t(net.biases[k + 1], dev)
        bs = b[:, None] * ts[None, :]  # the bias times s = ts . xi + t0
        L = Wp @ aL + Wn @ aU + bs
        U = Wp @ aU + Wn @ aL + bs
        lc = al @ Wp.T + au @ Wn.T + b * t0
        uc = au @ Wp.T + al @ Wn.T + b * t0
    return Bounds(lowers, uppers, states, empty)


def merge_identity_pairs(weights: list[np.ndarray], biases: list[np.ndarray],
                         slopes: list[float]) -> tuple[list[np.ndarray], list[np.ndarray],
                                                       list[np.ndarray]]:
    """The same function with its ReLU units that compute the identity marked (mask per
    hidden layer): each pair (i, j) of a hidden layer whose rows, biases and outgoing
    columns are exact negatives of each other (z and -z in, w and -w out: w relu(z) -
    w relu(-z) = w z) becomes one identity unit i; and a unit whose pre-activation is a
    non-negative combination of the previous ReLU layer's (non-negative) outputs, with a
    non-negative bias, is >= 0 everywhere, so relu is the identity on it. Exact unrolling
    passes values through ReLU layers this way; as identities they have no kink, so bab
    neither splits them nor relaxes them."""
    weights = [np.asarray(W, np.float64) for W in weights]
    biases = [np.asarray(b, np.float64) for b in biases]
    masks = []
    for k in range(len(weights) - 1):
        n = weights[k].shape[0]
        if slopes[k] != 0.0:
            masks.append(np.zeros(n, dtype=bool))
            continue
        W, b, Wn = weights[k], biases[k], weights[k + 1]
        seen: dict[bytes, int] = {}
        keep = np.ones(n, dtype=bool)
        ident = np.zeros(n, dtype=bool)
        for i in range(n):
            # +0.0 so that -0.0 and 0.0 hash alike
            key = np.concatenate([W[i], [b[i]], Wn[:, i]]) + 0.0
            if not np.any(key):
                continue
            partner = seen.pop((-key + 0.0).tobytes(), None)
            if partner is not None:
                keep[i] = False
                ident[partner] = True
            else:
                seen.setdefault(key.tobytes(), i)
        if not keep.all():
            weights[k], biases[k] = W[keep], b[keep]
            weights[k + 1] = Wn[:, keep]
        ident = ident[keep]
        if k > 0 and slopes[k - 1] == 0.0:
            W, b, prev = weights[k], biases[k], masks[k - 1]
            ident |= (np.all(W[:, ~prev] >= 0, axis=1) & ~np.any(W[:, prev] != 0, axis=1)
                      & (b >= 0) & np.any(W != 0, axis=1))
        masks.append(ident)
    return weights, biases, masks


# ------------------------------------------------------------------------ Jacobian bounds
def nonneg_norm(E: torch.Tensor, norm: str) -> torch.Tensor:
    """Certified upper bounds of ||E_b||_{p->p} for entrywise non-negative E (B, m, n); for an
    entrywise bound |J| <= E this bounds ||J|| too (p = 2: Perron-Frobenius)."""
    m, n = E.shape[-2:]
    if norm == "inf":
        return E.sum(-1).amax(-1) * (1 + 2 * (n + 1) * UNIT_ROUNDOFF)
    if norm == "1":
        return E.sum(-2).amax(-1) * (1 + 2 * (m + 1) * UNIT_ROUNDOFF)
    if min(m, n) == 1:
        return torch.linalg.vector_norm(E, dim=(-2, -1)) * (1 + 2 * (m * n + 2) * UNIT_ROUNDOFF)
    return spectral_upper(E)


def spectral_upper(J: torch.Tensor) -> torch.Tensor:
    """Certified upper bounds of ||J_b||_2 for exactly represented matrices J (B, m, n)."""
    m, n = J.shape[-2:]
    if min(m, n) == 1:
        return torch.linalg.vector_norm(J, dim=(-2, -1)) * (1 + 2 * (m * n + 2) * UNIT_ROUNDOFF)
    G = J @ J.mT if m <= n else J.mT @ J
    lam = torch.linalg.eigvalsh(G)[..., -1].clamp_min(0)
    r, inner = min(m, n), max(m, n)
    rel = EIG_MARGIN + 4 * (inner + 10 * r) * UNIT_ROUNDOFF
    fro2 = (J * J).sum((-2, -1))
    return torch.sqrt(lam * (1 + rel) + 4 * (r + 1) * UNIT_ROUNDOFF * fro2 + 1e-300)


def matrix_norms(J: torch.Tensor, norm: str) -> torch.Tensor:
    """Float64 values of ||J_b||_{p->p} (no margin): the candidates of lower bounds."""
    if norm == "inf":
        return J.abs().sum(-1).amax(-1)
    if norm == "1":
        return J.abs().sum(-2).amax(-1)
    if min(J.shape[-2:]) == 1:
        return torch.linalg.vector_norm(J, dim=(-2, -1))
    return torch.linalg.matrix_norm(J, ord=2)


def certified_norms(J: torch.Tensor, norm: str, err: torch.Tensor) -> torch.Tensor:
    """Upper bounds of ||J_true|| for computed Jacobians J with |J - J_true| <= err."""
    if norm == "2":
        return spectral_upper(J) + torch.linalg.vector_norm(err) * (1 + 1e-12)
    return nonneg_norm((J.abs() + err), norm)


def interval_norm(net: Net, states: list[torch.Tensor], norm: str, err: torch.Tensor
                  ) -> torch.Tensor:
    """Upper bound (B,) of the Jacobian norm over every pattern the states allow."""
    dl, dh = slope_intervals(net, states)
    return nonneg_norm(interval_backward(net, dl, dh) + err, norm)


def pattern_jacobians(net: Net, slopes: list[torch.Tensor]) -> torch.Tensor:
    """Jacobians (P, m, n) for slope vectors per hidden layer (P, n_k)."""
    dev = slopes[0].device
    J = _t(net.weights[-1], dev).expand(slopes[0].shape[0], -1, -1)
    for k in range(net.hidden - 1, -1, -1):
        J = (J * slopes[k][:, None, :]) @ _t(net.weights[k], dev)
    return J


def slopes_from_states(net: Net, states: list[torch.Tensor]) -> list[torch.Tensor]:
    """Slope vectors of fully determined states (free neurons count as on)."""
    return [_choose(st == 0, net.slopes[k], 1.0)
            for k, st in enumerate(states)]


def slope_intervals(net: Net, states: list[torch.Tensor]
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per hidden layer, the slope range [dl, dh] of each neuron: on 1, off alpha, free
    [alpha, 1]."""
    dl, dh = [], []
    for k, st in enumerate(states):
        a = net.slopes[k]
        dl.append(_choose(st == 1, 1.0, a))
        dh.append(_choose(st == 0, a, 1.0))
    return dl, dh


def interval_backward(net: Net, dl: list[torch.Tensor], dh: list[torch.Tensor]
                      ) -> torch.Tensor:
    """Entrywise bound E (R, m, n) on |J| over every pattern whose slopes lie in [dl, dh]
    (rows (R, n_k) per hidden layer), by interval arithmetic from the output backwards; the
    part before the first interval is exact."""
    dev = dl[0].device
    R = dl[0].shape[0]
    lo = _t(net.weights[-1], dev).expand(R, -1, -1)
    hi = lo
    exact = True
    for k in range(net.hidden - 1, -1, -1):
        a, b = dl[k][:, None, :], dh[k][:, None, :]
        W = _t(net.weights[k], dev)
        if exact and torch.equal(a, b):
            lo = (lo * a) @ W
            hi = lo
            continue
        lo_d = torch.minimum(lo * a, lo * b)
        hi_d = torch.maximum(hi * a, hi * b)
        exact = False
        Wp, Wn = W.clamp_min(0), W.clamp_max(0)
        lo, hi = lo_d @ Wp + hi_d @ Wn, hi_d @ Wp + lo_d @ Wn
    return torch.maximum(lo.abs(), hi.abs())


_BITS: dict[tuple[int, str], torch.Tensor] = {}


def _bits(u: int, device: torch.device) -> torch.Tensor:
    key = (u, str(device))
    if key not in _BITS:
        idx = torch.arange(1 << u, device=device)
        _BITS[key] = ((idx[:, None] >> torch.arange(u, device=device)) & 1).to(torch.float64)
    return _BITS[key]


def completion_bounds(net: Net, states: list[np.ndarray], norm: str, err: torch.Tensor,
                      bits: int, device: torch.device) -> np.ndarray:
    """Certified upper bounds on the Jacobian norm over each node's patterns (states: per
    hidden layer (B, n_k) for B nodes): the free neurons nearest the output, `bits` of them
    at most, take each of their values in turn, the others stay intervals. With every free
    neuron enumerated this is the exact maximum over the node's completions."""
    B = states[0].shape[0]
    plans, counts = [], []
    for i in range(B):
        chosen, left = [], bits
        for k in range(net.hidden - 1, -1, -1):
            if left <= 0:
                break
            idx = np.nonzero(states[k][i] == 2)[0][:left]
            if idx.size:
                chosen.append((k, idx))
                left -= idx.size
        plans.append(chosen)
        counts.append(1 << (bits - left))
    reps = torch.as_tensor(counts, device=device)
    st_t = [torch.as_tensor(st, device=device) for st in states]
    dl0, dh0 = slope_intervals(net, st_t)
    dl = [x.repeat_interleave(reps, dim=0) for x in dl0]
    dh = [x.repeat_interleave(reps, dim=0) for x in dh0]
    start = 0
    for chosen, C in zip(plans, counts):
        comb = _bits(C.bit_length() - 1, device)
        col = 0
        for k, idx in chosen:
            a = net.slopes[k]
            vals = a + (1 - a) * comb[:, col:col + idx.size]
            j = torch.as_tensor(idx, device=device)
            dl[k][start:start + C, j] = vals
            dh[k][start:start + C, j] = vals
            col += idx.size
        start += C
    own = torch.arange(B, device=device).repeat_interleave(reps)
    m = net.weights[-1].shape[0]
    width = max(W.shape[0] for W in net.weights)
    per = max(1, ENUM_ELEMENTS // max(m * width, 1))
    out = torch.zeros(B, dtype=torch.float64, device=device)
    for s0 in range(0, own.numel(), per):
        sl = slice(s0, s0 + per)
        E = interval_backward(net, [x[sl] for x in dl], [x[sl] for x in dh])
        out.scatter_reduce_(0, own[sl], nonneg_norm(E + err, norm), reduce="amax")
    return out.cpu().numpy()


def _mitm_max(c: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """max over e in {0, 1}^f of ||c_s + sum_j e_j a_sj||^2 for each s (c: (S, n), a: (S, f,
    n)), by halves: ||x + y||^2 = |x|^2 + |y|^2 + 2 x.y over all pairs at once; returns the
    maxima and a bound on their float64 rounding (S,)."""
    f = a.shape[1]
    h = f // 2
    El, Eh = _bits(h, a.device), _bits(f - h, a.device)
    pairs = El.shape[0] * Eh.shape[0]
    step = max(1, MITM_ELEMENTS // pairs)
    vals, errs = [], []
    for s0 in range(0, a.shape[0], step):
        sl = slice(s0, s0 + step)
        X = El @ a[sl, :h, :]  # (s, 2^h, n)
        Y = c[sl, None, :] + Eh @ a[sl, h:, :]  # (s, 2^(f-h), n)
        nx, ny = (X * X).sum(-1), (Y * Y).sum(-1)
        q = nx[:, :, None] + ny[:, None, :] + 2 * (X @ Y.mT)
        vals.append(q.amax((-2, -1)).clamp_min(0))
        mag = nx.amax(-1).sqrt() + ny.amax(-1).sqrt()
        errs.append(4 * (a.shape[-1] + f + 4) * UNIT_ROUNDOFF * mag * mag)
    return torch.cat(vals), torch.cat(errs)


Survivors = tuple  # (layer L, its free neurons, their surviving values (S, u) uint8, rest)


def exact_completions(net: Net, states: list[np.ndarray], err: torch.Tensor, target: float,
                      device: torch.device, priors: list[Survivors | None] | None = None
                      ) -> tuple[np.ndarray, list[Survivors | None]]:
    """Certified upper bounds on ||grad f||_2 (one output) over each node's completions, exact
    up to rounding, or inf where this does not apply.

    With the free neurons in one layer L, the gradient is c + sum_k e_k r_k over e in
    {0, 1}^u and its largest norm is taken by meet in the middle (`_mitm_max`). With free
    neurons in two layers k < L (and none between): each completion e_L of layer L (at most
    2^SCREEN_BITS) first gets the interval bound over layer k; those above `target` (the
    incumbent) then get the exact maximum over layer k by meet in the middle. Unrealisable
    patterns are included, so this bounds the node's slopes from above.

    The completions of layer L still above the target are returned per node (when at most
    SURVIVORS_KEPT): a child's completions are a subset of its parent's, and those ruled out
    stay ruled out (the target only rises), so `priors` (the parents') restrict the
    enumeration; their largest ruled-out value `rest` stays in the bound."""
    B = states[0].shape[0]
    out = np.full(B, np.inf)
    kept: list[Survivors | None] = [None] * B
    if net.weights[-1].shape[0] != 1:
        return out, kept
    err_f = float(torch.linalg.vector_norm(err))
    W = [_t(w, device) for w in net.weights]
    for i in range(B):
        free = [np.nonzero(states[k][i] == 2)[0] for k in range(net.hidden)]
        layers = [k for k in range(net.hidden) if free[k].size]
        if not layers or len(layers) > 2:
            continue
        L = layers[-1]
        k0 = layers[0]
        if len(layers) == 2 and (free[L].size > SCREEN_BITS or free[k0].size > SCREEN_LOW):
            continue
        if len(layers) == 1 and free[L].size > MITM_BITS:
            continue
        d = [_choose(torch.as_tensor(states[k][i], device=device) == 0, net.slopes[k], 1.0)
             for k in range(net.hidden)]
        for k in layers:  # free neurons at their lower slope; e_j adds (1 - alpha)
            d[k][torch.as_tensor(free[k], device=device)] = net.slopes[k]
        row = W[-1][0]
        for k in range(net.hidden - 1, L, -1):
            row = (row * d[k]) @ W[k]  # fixed layers after L
        k_low = k0 if len(layers) == 2 else L
        P = W[0]
        for k in range(k_low):
            P = W[k + 1] @ (d[k][:, None] * P)  # fixed layers below: (n_{k_low}, n)
        fL = torch.as_tensor(free[L], device=device)
        aL = net.slopes[L]
        if len(layers) == 1:
            c = ((row * d[L]) @ P)[None]
            a = ((1 - aL) * row[fL, None] * P[fL])[None]
            q, e = _mitm_max(c, a)
            out[i] = math.sqrt(float((q + e).max())) * (1 + 4 * UNIT_ROUNDOFF) + err_f
            continue
        # two layers: every completion of layer L, the rows carried down to layer k0
        prior = priors[i] if priors is not None else None
        rest = 0.0
        if prior is not None and prior[0] == L and np.isin(free[L], prior[1]).all():
            cols, bits_p = prior[1], prior[2]
            ok = torch.ones(bits_p.shape[0], dtype=torch.bool, device=device)
            for c_i, j in enumerate(cols):
                if states[L][i][j] != 2:  # fixed since: only the consistent completions
                    ok &= bits_p[:, c_i] == int(states[L][i][j] == 1)
            take = torch.as_tensor(np.nonzero(np.isin(cols, free[L]))[0], device=device)
            E = bits_p[ok][:, take].to(torch.float64)
            rest = prior[3]
        else:
            E = _bits(free[L].size, device)
        if E.shape[0] == 0:
            out[i] = math.sqrt(rest) * (1 + 4 * UNIT_ROUNDOFF) + err_f
            kept[i] = (L, free[L], torch.zeros((0, free[L].size), dtype=torch.uint8,
                                               device=device), rest)
            continue
        v = (row * d[L]).expand(E.shape[0], -1).clone()
        v[:, fL] += (1 - aL) * row[fL] * E
        for k in range(L, k0, -1):  # down to the coefficients of layer k0's slopes
            v = v @ W[k]
            if k - 1 > k0:
                v = v * d[k - 1]
        f0 = torch.as_tensor(free[k0], device=device)
        a0 = net.slopes[k0]
        c = (v * d[k0]) @ P  # (C, n): free neurons of k0 at slope a0
        vf, Pf = (1 - a0) * v[:, f0], P[f0]
        vp, vn, Pp, Pn = vf.clamp_min(0), vf.clamp_max(0), Pf.clamp_min(0), Pf.clamp_max(0)
        hi = c + vp @ Pp + vn @ Pn  # the interval over layer k0's free neurons
        lo = c + vp @ Pn + vn @ Pp
        hull = (torch.maximum(hi.abs(), lo.abs()) ** 2).sum(-1)
        mag = (c.abs() + vf.abs() @ Pf.abs()).pow(2).sum(-1)
        hull = hull + 4 * (P.shape[-1] + f0.numel() + 4) * UNIT_ROUNDOFF * mag
        best = max(rest, float(hull.max()))
        t2 = target * target
        above = hull * (1 + 1e-12) > t2
        surv = torch.nonzero(above).reshape(-1)
        if surv.numel() and surv.numel() << f0.numel() <= SCREEN_PAIRS:
            rest = max(rest, float(hull[~above].max()) if bool((~above).any()) else 0.0)
            contrib = vf[surv, :, None] * Pf[None]  # (S, f, n)
            q, e = _mitm_max(c[surv], contrib)
            val = q + e
            best = max(rest, float(val.max()))
            high = val * (1 + 1e-12) > t2
            rest = max(rest, float(val[~high].max()) if bool((~high).any()) else 0.0)
            surv = surv[high]
        if surv.numel() <= SURVIVORS_KEPT:
            kept[i] = (L, free[L], E[surv].to(torch.uint8), rest)
        out[i] = math.sqrt(best) * (1 + 4 * UNIT_ROUNDOFF) + err_f
    return out, kept
