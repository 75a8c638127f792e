"""Exact Lipschitz constants of ReLU and leaky-ReLU MLPs by branch-and-bound, anytime.

The constant (global, over a box or over an l2 ball) is the largest ||J||_{p->p} over the
linear regions meeting the set (DESIGN.md section 1). The search splits the set into nodes:
boxes of a chart (bisected while the input dimension is small) and, inside a box, the two
sides of an unstable neuron whose pre-activation is affine there (every earlier layer fixed),
kept when a Chebyshev-ball LP (HiGHS) finds them full-dimensional. Each node gets a certified
upper bound (symbolic interval bounds fix its stable neurons; then the interval hull of the
remaining Jacobians, or their exact maximum when few neurons are free) and yields a lower
bound: the Jacobian at a point inside it, certified by a secant. Nodes are explored best
first and pruned against the incumbent; a node whose neurons are all fixed is a linear
region and is resolved exactly.

The global constant needs no box guess: with x = y / s the network is positively homogeneous
in (y, s), its regions are cones, and bounded charts meet every cone (bab_bounds.py).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..bound import Bound, Domain
from ..errors import InputError, UnsupportedError
from ..network import Network
from ..quiet import native_silence
from ..registry import method
from .bab_bounds import (
    Chart,
    Net,
    box_chart,
    certified_norms,
    completion_bounds,
    cone_chart,
    exact_completions,
    face_charts,
    interval_norm,
    matrix_norms,
    merge_identity_pairs,
    pattern_jacobians,
    preactivation_bounds,
)
from .bab_geometry import Chebyshev, ExactNet, affine_layer, exact_secant
from .regions import FULL_DIM_RADIUS

log = logging.getLogger(__name__)

# Charts of dimension up to this are bisected (cheap, and bounds tighten fast in few
# dimensions) when the net has at least BOX_SPLIT_NEURONS hidden neurons; otherwise nodes are
# split on neurons only (on seeded tiny nets 3-30x faster than bisecting).
BOX_SPLIT_DIM = 3
BOX_SPLIT_NEURONS = 40
# A box is split on neurons instead once this few neurons are free on it.
NEURON_SPLIT_FREE = 4
# A box is split on neurons once STALL * dimension box splits in a row freed no neuron (near
# points where many regions meet, such as the apex of a strip's wedge in a global chart).
STALL = 2
# Boxes narrower than this (relative to the chart) are split on neurons only.
MIN_BOX = 1e-6
# first-layer rows this small against the largest set no chart radius (`global_radius`)
DEAD_ROW_RTOL = 1e-8
# Completion bounds tried in turn on a node not yet pruned: this many free neurons nearest
# the output enumerated (a node with at most that many free gets the exact maximum over its
# completions).
ENUM_STEPS = (8,)
# Nodes taken from the queue at once (their children are bounded in one batch).
BATCH = 64
# A point clears a split hyperplane by this much (relative) to count as inside a child.
STRICT_MARGIN = 1e-9
# A depth-first dive from the best node every DIVE_EVERY batches without a better incumbent
# (and at the start), at most DIVE_DEPTH levels.
DIVE_EVERY = 8
DIVE_DEPTH = 200
# Random points per chart for the first incumbent.
SAMPLES = 4096
# A side is full-dimensional when a ball of radius FULL_DIM_RADIUS (1 + scale) fits in it
# (as in regions.py). It is empty only when an LP dual certificate proves that no ball above
# EMPTY_RADIUS (1 + scale) fits; in between it is a sliver, whose slope stays in the upper
# bound. (regions.py's 1e-14 is below the float64 rounding of such a certificate, ~1e-13.)
EMPTY_RADIUS = 1e-12
# Relative steps of the certifying secants of candidate points.
SECANT_STEPS = (1e-3, 1e-5, 1e-7)
# Messages of failed sub-solves kept in details (the count is kept in full).
FAILURES_KEPT = 5
# The toolkit's own bounds (LipSDP-Neuron above, region-walk below) join a run still open
# after ROOT_BOUNDS_AFTER seconds, or ROOT_BOUNDS_AT of its time limit if that is sooner, each
# with ROOT_BOUNDS_SHARE of the time limit (tiny nets finish first and never pay for them).
ROOT_BOUNDS_AFTER = 1.0
ROOT_BOUNDS_AT = 0.05
ROOT_BOUNDS_SHARE = 0.15
# Node LipSDP (ReLU nets, l2): the node on top of the queue, when its bound is above the
# root's LipSDP bound, is bounded by LipSDP-Neuron on the net without its inactive neurons,
# while those solves have taken at most NODE_SDP_SHARE of the time since they began.
NODE_SDP_SHARE = 0.5
# The exact rational secant (`sharpen`) evaluates the net in fractions.Fraction: minutes on
# nets of more weight entries than this, where the float64 secant stands instead.
EXACT_SECANT_MAX_ENTRIES = 200_000


@dataclass
class Node:
    ub: float
    chart: int
    lo: np.ndarray
    hi: np.ndarray
    forced: np.ndarray  # (N,) int8: -1 free, 0 off, 1 on
    G: np.ndarray  # split constraints G xi <= h
    h: np.ndarray
    point: np.ndarray  # a point inside the node (chart coordinates)
    radius: float  # a ball of this radius about `point` lies inside the node
    states: list[np.ndarray] | None = None
    depth: int = 0
    free: int = -1  # neurons free on the node (after bounding)
    stall: int = 0  # box splits in a row that freed no neuron
    survivors: Any = None  # completions not yet ruled out (bab_bounds.exact_completions)
    inherited: list[np.ndarray] | None = None  # the parent's states (stable stays stable)
    sdp: bool = False  # bounded by LipSDP-Neuron on the net the node leaves alive


@dataclass
class Incumbent:
    """The best certified lower bound: its value, secant pair and region."""

    lower: float = 0.0
    value: float = 0.0  # float64 norm of the region's Jacobian
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    region: tuple[int, np.ndarray, float, list[np.ndarray]] | None = None  # chart, pt, r, slopes


class _Search:
    """State of one branch-and-bound run."""

    def __init__(self, network: Network, net: Net, charts: list[Chart], norm: str,
                 domain: Domain | None, rtol: float, device: Any, seed: int) -> None:
        self.network, self.net, self.charts, self.norm = network, net, charts, norm
        self.domain, self.rtol, self.device = domain, rtol, torch.device(device or "cpu")
        self.rng = np.random.default_rng(seed)
        self.err = torch.as_tensor(net.product_error(), device=self.device)
        ball = None
        if domain is not None and domain.kind == "ball":
            ball = (domain.center.ravel().astype(np.float64), float(domain.radius))
        self.ball = ball
        self.lp = {i: Chebyshev(c.dim, ball) for i, c in enumerate(charts)}
        self.best = Incumbent()
        self.heap: list[tuple[float, int, Node]] = []
        self.counter = itertools.count()
        self.closed = 0.0  # largest upper bound of a pruned or resolved node
        self.sliver_ub = 0.0
        self.slivers = 0
        # nodes whose bounding or splitting failed (a sub-solve raised): kept with the bound
        # they had, never expanded, never pruned
        self.unresolved = 0
        self.unresolved_ub = 0.0
        self.failures: list[str] = []
        self.failed = 0
        self.nodes = 0
        self.regions = 0
        self.exact: ExactNet | None = None
        self.deadline: float | None = None
        self.stderr: Any = sys.stderr
        self.seed = seed
        self.use_lipsdp, self.use_walk = True, True
        self.boosted = False
        self.outside_upper = math.inf  # a certified upper bound from outside the search
        self.sources = {"lower": "bab", "upper": "bab"}
        self.root_bounds: dict[str, dict[str, Any]] = {}
        self.node_sdp = True
        self.sdp_seconds = 0.0
        self.sdp_count = 0
        self.sdp_since: float | None = None

    # ------------------------------------------------------------------ bounds
    def late(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def target(self) -> float:
        return self.best.lower * (1 + self.rtol)

    def own_upper(self) -> float:
        top = -self.heap[0][0] if self.heap else 0.0
        return max(top, self.closed, self.sliver_ub, self.unresolved_ub, self.best.lower)

    def upper(self) -> float:
        return max(min(self.own_upper(), self.outside_upper), self.best.lower)

    def sdp_worth(self) -> bool:
        """Whether the top node gets a LipSDP bound now (the measured rule above)."""
        if not (self.node_sdp and self.use_lipsdp and self.norm == "2" and self.boosted
                and self.heap and math.isfinite(self.outside_upper)
                and not any(self.net.slopes) and not self.net.identities):
            return False
        nd = self.heap[0][2]
        if nd.sdp or nd.states is None or nd.ub < self.outside_upper:
            return False
        now = time.perf_counter()
        if self.sdp_since is None:
            self.sdp_since = now
        return self.sdp_seconds <= NODE_SDP_SHARE * (now - self.sdp_since) + 1e-3

    def node_sdp_bound(self, nd: Node) -> None:
        """LipSDP-Neuron on the net the node leaves alive: on the node every inactive ReLU
        outputs 0, so the net equals the one without those neurons there, and the node
        (convex: a box and half-spaces, through a perspective map) lies in its domain."""
        from .lipsdp import lipsdp_neuron

        nd.sdp = True
        t = time.perf_counter()
        try:
            keep = [st != 0 for st in nd.states]
            Ws, bs = [], []
            prev = np.ones(self.net.weights[0].shape[1], bool)
            for k, W in enumerate(self.net.weights):
                rows = keep[k] if k < len(keep) else np.ones(W.shape[0], bool)
                Ws.append(W[rows][:, prev])
                bs.append(np.zeros(int(rows.sum())))
                prev = rows
            if any(W.size == 0 for W in Ws):
                value = 0.0  # constant on the node
            else:
                left = None if self.deadline is None else max(
                    self.deadline - time.perf_counter(), 0.1)
                b = lipsdp_neuron(Network.from_mlp(Ws, bs), time_limit=left)
                value = b.value if b.certified and math.isfinite(b.value) else math.inf
            nd.ub = min(nd.ub, value)
            self.sdp_count += 1
        except Exception as exc:  # noqa: BLE001 - the node keeps its bound
            self.fail("node lipsdp-neuron", exc)
        self.sdp_seconds += time.perf_counter() - t

    def boost(self, budget: float | None) -> None:
        """The toolkit's best certified bounds on the same net: LipSDP-Neuron (global l2,
        so also above any set's constant) as an upper bound, region-walk's certified
        secant as the incumbent. A failure or an uncertified answer is only recorded."""
        from .lipsdp import lipsdp_neuron
        from .region_walk import region_walk

        self.boosted = True
        if self.use_lipsdp and self.norm == "2":
            t = time.perf_counter()
            try:
                b = lipsdp_neuron(self.network, time_limit=budget)
                self.root_bounds["lipsdp-neuron"] = {
                    "value": b.value, "certified": b.certified, "status": b.status,
                    "seconds": time.perf_counter() - t}
                if b.certified and math.isfinite(b.value) and b.value < self.outside_upper:
                    self.outside_upper = b.value
            except Exception as exc:  # noqa: BLE001 - the search goes on without it
                self.fail("lipsdp-neuron", exc)
        if self.use_walk:
            t = time.perf_counter()
            try:
                w = region_walk(self.network, norm=self.norm, domain=self.domain,
                                time_limit=budget, seed=self.seed)
                self.root_bounds["region-walk"] = {
                    "value": w.value, "certified": w.certified, "status": w.status,
                    "seconds": time.perf_counter() - t}
                pair = w.details.get("witness") or {}
                if (w.certified and w.value > self.best.lower and pair.get("x") is not None
                        and pair.get("y") is not None):
                    self.best.lower = float(w.value)
                    self.best.x = np.asarray(pair["x"], np.float64)
                    self.best.y = np.asarray(pair["y"], np.float64)
                    self.sources["lower"] = "region-walk"
            except Exception as exc:  # noqa: BLE001 - the search goes on without it
                self.fail("region-walk", exc)

    def fail(self, what: str, exc: BaseException) -> None:
        """Record a failed sub-solve (the run goes on without its result)."""
        self.failed += 1
        msg = f"{what}: {type(exc).__name__}: {exc}"
        if len(self.failures) < FAILURES_KEPT:
            self.failures.append(msg)
        log.debug("bab: %s", msg)

    def give_up(self, nodes: list[Node], what: str, exc: Exception) -> None:
        """A sub-solve failed on `nodes`: each keeps the certified bound it had (its
        parent's, or tighter), stays in the upper bound, and is expanded no further."""
        self.fail(what, exc)
        for nd in nodes:
            self.unresolved += 1
            self.unresolved_ub = max(self.unresolved_ub, nd.ub)

    def bound(self, nodes: list[Node]) -> list[Node]:
        """Bound `nodes` (in place); returns those still open (not resolved, pruned or
        empty). A group whose bounding fails is given up (`give_up`), not lost."""
        out: list[Node] = []
        by_chart: dict[int, list[Node]] = {}
        for nd in nodes:
            by_chart.setdefault(nd.chart, []).append(nd)
        for ci, group in by_chart.items():
            try:
                out.extend(self.bound_group(ci, group))
            except Exception as exc:  # noqa: BLE001 - any failure leaves the nodes unresolved
                self.give_up(group, "node bounds", exc)
            try:
                self.candidates(ci, [nd for nd in group if nd.states is not None])
            except Exception as exc:  # noqa: BLE001 - the lower bound just does not rise
                self.fail("candidate points", exc)
        return out

    def bound_group(self, ci: int, group: list[Node]) -> list[Node]:
        """Bounds of the nodes of one chart; returns those still open."""
        out: list[Node] = []
        chart = self.charts[ci]
        dev = self.device
        lo = torch.as_tensor(np.stack([g.lo for g in group]), device=dev)
        hi = torch.as_tensor(np.stack([g.hi for g in group]), device=dev)
        forced = torch.as_tensor(np.stack([g.forced for g in group]), device=dev)
        bd = preactivation_bounds(self.net, chart, lo, hi, forced)
        if any(g.inherited is not None for g in group):
            # a neuron stable on the parent is stable on the child (the bounds of a
            # sub-box need not be tighter neuron by neuron)
            for k in range(self.net.hidden):
                inh = torch.as_tensor(np.stack([
                    g.inherited[k] if g.inherited is not None
                    else np.full(bd.states[k].shape[1], 2, np.int8) for g in group]),
                    device=dev)
                bd.states[k] = torch.where(inh != 2, inh, bd.states[k])
        ubs = interval_norm(self.net, bd.states, self.norm, self.err)
        free = sum((st == 2).sum(-1) for st in bd.states)
        states_np = [st.cpu().numpy() for st in bd.states]
        ubs = ubs.cpu().numpy()
        empty = bd.empty.cpu().numpy()
        free = free.cpu().numpy()
        live = []
        for i, nd in enumerate(group):
            if empty[i]:
                continue
            nd.states = [st[i] for st in states_np]
            nd.inherited = None
            nd.ub = min(nd.ub, float(ubs[i]))
            u = int(free[i])
            if nd.free >= 0 and u < nd.free:
                nd.stall = 0
            nd.free = u
            if u == 0:
                self.resolve(nd)
            elif nd.ub > self.target():
                live.append(i)
            else:
                self.closed = max(self.closed, nd.ub)
        if self.late():
            out.extend(group[i] for i in live)
            live = []
        if live and self.norm == "2" and self.net.weights[-1].shape[0] == 1:
            sub = [st[live] for st in states_np]
            gram, surv = exact_completions(self.net, sub, self.err, self.target(),
                                           self.device, [group[i].survivors for i in live])
            keep = []
            for i, g, sv in zip(live, gram, surv):
                nd = group[i]
                nd.survivors = sv
                nd.ub = min(nd.ub, float(g))
                if nd.ub <= self.target():
                    self.closed = max(self.closed, nd.ub)
                elif math.isfinite(g):  # exact over the completions already
                    out.append(nd)
                else:
                    keep.append(i)
            live = keep
        for bits in ENUM_STEPS:
            if not live or self.late():
                break
            sub = [st[live] for st in states_np]
            enum = completion_bounds(self.net, sub, self.norm, self.err, bits,
                                     self.device)
            keep = []
            for i, e in zip(live, enum):
                nd = group[i]
                nd.ub = min(nd.ub, float(e))
                if nd.ub <= self.target():
                    self.closed = max(self.closed, nd.ub)
                elif nd.free > bits:
                    keep.append(i)
                else:
                    out.append(nd)
            live = keep
        out.extend(group[i] for i in live)
        return out

    def resolve(self, nd: Node) -> None:
        """All neurons fixed: the node lies in one linear region; its slope is exact."""
        self.regions += 1
        slopes = self.slopes(nd.states)
        J = pattern_jacobians(self.net, [torch.as_tensor(s, device=self.device)[None]
                                         for s in slopes])
        ub = float(certified_norms(J, self.norm, self.err)[0])
        value = float(matrix_norms(J, self.norm)[0])
        self.closed = max(self.closed, ub)
        if value > self.best.value:
            try:
                self.offer(nd.chart, nd.point, J[0].cpu().numpy(), value, nd.radius, slopes)
            except Exception as exc:  # noqa: BLE001 - the lower bound just does not rise
                self.fail("region witness", exc)

    def slopes(self, states: list[np.ndarray]) -> list[np.ndarray]:
        return [np.where(st == 0, self.net.slopes[k], 1.0) for k, st in enumerate(states)]

    # ------------------------------------------------------------------ lower bounds
    def chart_slopes(self, ci: int, xi: np.ndarray) -> list[np.ndarray]:
        """Slope vectors (P, n_k) of the pattern at chart points xi (P, d)."""
        chart = self.charts[ci]
        z = xi @ chart.A0.T + chart.c0
        s = xi @ chart.ts + chart.t0
        out = []
        for k in range(self.net.hidden):
            slope = np.where((z > 0) | self.net.ident[k], 1.0, self.net.slopes[k])
            out.append(slope)
            if k + 1 < self.net.hidden:
                z = (slope * z) @ self.net.weights[k + 1].T + np.outer(s, self.net.biases[k + 1])
        return out

    def candidates(self, ci: int, nodes: list[Node]) -> None:
        """Jacobians at the nodes' points; certify those beating the incumbent."""
        if not nodes:
            return
        pts = np.stack([nd.point for nd in nodes])
        self.offer_points(ci, pts, [nd.radius for nd in nodes])

    def offer_points(self, ci: int, pts: np.ndarray, radii: list[float] | None = None) -> None:
        slopes = self.chart_slopes(ci, pts)
        J = pattern_jacobians(self.net, [torch.as_tensor(s, device=self.device)
                                         for s in slopes])
        vals = matrix_norms(J, self.norm).cpu().numpy()
        for i in np.argsort(-vals)[:4]:
            if vals[i] <= self.best.value * (1 + 1e-12):
                break
            self.offer(ci, pts[i], J[i].cpu().numpy(), float(vals[i]),
                       None if radii is None else radii[i], [s[i] for s in slopes])

    def direction(self, J: np.ndarray) -> np.ndarray:
        if self.norm == "inf":
            v = np.sign(J[int(np.abs(J).sum(1).argmax())])
            return np.where(v == 0, 1.0, v)
        if self.norm == "1":
            v = np.zeros(J.shape[1])
            v[int(np.abs(J).sum(0).argmax())] = 1.0
            return v
        return np.linalg.svd(J)[2][0]

    def _pairs(self, ci: int, xi: np.ndarray, J: np.ndarray, radius: float | None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Secant pairs (x, x + t v) along the top direction v of J, both in the domain,
        longest first: steps from the node's inscribed radius (mapped to x) downwards."""
        chart = self.charts[ci]
        x = chart.to_x(xi)[0]
        v = self.direction(J)
        v = v / max(float(np.linalg.norm(v)), 1e-300)
        s = float(xi @ chart.ts + chart.t0)
        scale = max(1.0, float(np.abs(x).max()))
        steps = [scale * h for h in SECANT_STEPS]
        if radius is not None and radius > 0:
            base = 0.5 * radius / max(s, 1e-300)
            steps = sorted(set([base * f for f in (1.0, 1e-2, 1e-4)] + steps), reverse=True)
        pairs = []
        for t in steps:
            for sign in (1.0, -1.0):
                y = x + sign * t * v
                if np.any(y != x) and (self.domain is None or bool(
                        self.domain.contains(np.stack([x, y])).all())):
                    pairs.append((x, y))
                    break
        return pairs

    def offer(self, ci: int, xi: np.ndarray, J: np.ndarray, value: float,
              radius: float | None, slopes: list[np.ndarray]) -> None:
        """A point whose Jacobian norm beats the incumbent: certify it by float64 secants
        (and, for a point known to be inside its region, by an exact one if those fall
        short of its slope)."""
        from ..core.lower import secant_ratios

        pairs = self._pairs(ci, xi, J, radius)
        if not pairs:
            return
        X = np.stack([p[0] for p in pairs])
        Y = np.stack([p[1] for p in pairs])
        r = secant_ratios(self.network, X, Y, self.norm, certified=True)
        k = int(np.argmax(r))
        if r[k] > self.best.lower:
            self.best.lower, self.best.x, self.best.y = float(r[k]), X[k], Y[k]
            self.sources["lower"] = "bab"
        if radius is not None and value > self.best.value:
            self.best.value = value
            self.best.region = (ci, xi.copy(), radius, slopes)
            if self.best.lower < value * (1 - self.rtol / 4):
                self.sharpen()

    def sharpen(self) -> None:
        """Exact rational secant inside the best region found (closes the float64 gap)."""
        if self.best.region is None or self.best.lower >= self.best.value * (1 - 1e-13):
            return
        if sum(W.size for W in self.net.weights) > EXACT_SECANT_MAX_ENTRIES:
            return
        if self.exact is None:
            self.exact = ExactNet(self.net)
        ci, xi, radius, slopes = self.best.region
        J = pattern_jacobians(self.net, [torch.as_tensor(s, device=self.device)[None]
                                         for s in slopes])[0].cpu().numpy()
        for x, y in self._pairs(ci, xi, J, radius)[:4]:
            r = exact_secant(self.exact, x, y, self.norm)
            if r > self.best.lower:
                self.best.lower, self.best.x, self.best.y = r, x, y
                self.sources["lower"] = "bab"
            if r >= self.best.value * (1 - 1e-13):
                break

    def initial(self) -> None:
        """First incumbent from random points of every chart."""
        for ci, chart in enumerate(self.charts):
            pts = chart.lo + (chart.hi - chart.lo) * self.rng.random((SAMPLES, chart.dim))
            if self.ball is not None:
                c, R = self.ball
                d = self.rng.standard_normal((SAMPLES, chart.dim))
                d /= np.linalg.norm(d, axis=1, keepdims=True)
                pts = c + d * (R * self.rng.random((SAMPLES, 1)) ** (1 / chart.dim))
            self.offer_points(ci, pts)

    # ------------------------------------------------------------------ branching
    def push(self, nd: Node) -> None:
        heapq.heappush(self.heap, (-nd.ub, next(self.counter), nd))

    def root(self, ci: int) -> Node:
        c = self.charts[ci]
        n = self.net.neurons
        point = (c.lo + c.hi) / 2
        radius = float(np.min(c.hi - c.lo)) / 2
        if self.ball is not None:
            point, radius = self.ball[0].copy(), self.ball[1]
        return Node(math.inf, ci, c.lo.copy(), c.hi.copy(), np.full(n, -1, np.int8),
                    np.zeros((0, c.dim)), np.zeros(0), point, radius)

    def children(self, nd: Node) -> list[Node]:
        """`branch`, or no children and `nd` given up (kept in the bound) if it fails."""
        try:
            return self.branch(nd)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the node unresolved
            self.give_up([nd], "split", exc)
            return []

    def branch(self, nd: Node) -> list[Node]:
        chart = self.charts[nd.chart]
        if (chart.dim <= BOX_SPLIT_DIM and self.net.neurons >= BOX_SPLIT_NEURONS
                and self.ball is None and not len(nd.h)
                and nd.free > NEURON_SPLIT_FREE and nd.stall < STALL * chart.dim
                and np.max((nd.hi - nd.lo) / (chart.hi - chart.lo)) > MIN_BOX):
            return self.split_box(nd)
        return self.split_neuron(nd)

    def split_box(self, nd: Node) -> list[Node]:
        chart = self.charts[nd.chart]
        score = (nd.hi - nd.lo) * np.abs(chart.A0).sum(0)
        i = int(np.argmax(score))
        mid = 0.5 * (nd.lo[i] + nd.hi[i])
        out = []
        for lo_i, hi_i in ((nd.lo[i], mid), (mid, nd.hi[i])):
            lo, hi = nd.lo.copy(), nd.hi.copy()
            lo[i], hi[i] = lo_i, hi_i
            out.append(Node(nd.ub, nd.chart, lo, hi, nd.forced.copy(), nd.G, nd.h,
                            (lo + hi) / 2, float(np.min(hi - lo)) / 2, depth=nd.depth + 1,
                            free=nd.free, stall=nd.stall + 1, survivors=nd.survivors,
                            inherited=nd.states))
        return out

    def split_neuron(self, nd: Node) -> list[Node]:
        chart = self.charts[nd.chart]
        k = next(k for k, st in enumerate(nd.states) if (st == 2).any())
        slopes = self.slopes(nd.states[:k])
        P, q = affine_layer(self.net, chart, slopes, k)
        cand = np.nonzero(nd.states[k] == 2)[0]
        j = int(cand[self.choose(nd, k, cand, P, q)])
        g, c = P[j], q[j]
        if not np.any(g):
            # a constant pre-activation c on the node: one side holds all of it (either one
            # when c = 0, since the neuron's row of the Jacobian is then zero); the LP would
            # see two empty sides, as no ball clears a zero row
            forced = nd.forced.copy()
            forced[self.net.offsets[k] + j] = 1 if c >= 0 else 0
            return [Node(nd.ub, nd.chart, nd.lo, nd.hi, forced, nd.G, nd.h, nd.point,
                         nd.radius, depth=nd.depth + 1, survivors=nd.survivors,
                         inherited=nd.states)]
        scale = 1.0 + float(np.max(np.abs(np.concatenate([nd.lo, nd.hi]))))
        eps, floor = FULL_DIM_RADIUS * scale, EMPTY_RADIUS * scale
        val = float(g @ nd.point + c)
        margin = STRICT_MARGIN * (float(np.abs(g).sum()) * scale + abs(c))
        out = []
        for side in (1, 0):
            sign = 1.0 if side == 1 else -1.0  # side: sign (g xi + c) >= 0
            G = np.vstack([nd.G, -sign * g[None]])
            h = np.append(nd.h, sign * c)
            forced = nd.forced.copy()
            forced[self.net.offsets[k] + j] = side
            if sign * val > margin:
                dist = sign * val / max(float(np.linalg.norm(g)), 1e-300)
                point, radius = nd.point, min(nd.radius, dist)
            else:
                cap = float(np.max(nd.hi - nd.lo)) / 2
                try:
                    radius, point, relaxed = self.lp[nd.chart].ball_in(G, h, nd.lo, nd.hi,
                                                                       cap)
                except Exception as exc:  # noqa: BLE001 - the side is unresolved, not empty
                    self.give_up([nd], "Chebyshev LP", exc)
                    continue
                if not radius > eps:
                    if relaxed > floor:  # too thin to resolve: its slope stays in the bound
                        self.slivers += 1
                        self.sliver_ub = max(self.sliver_ub, nd.ub)
                    continue
            out.append(Node(nd.ub, nd.chart, nd.lo, nd.hi, forced, G, h, point, radius,
                            depth=nd.depth + 1, survivors=nd.survivors,
                            inherited=nd.states))
        return out

    def choose(self, nd: Node, k: int, cand: np.ndarray, P: np.ndarray, q: np.ndarray
               ) -> int:
        """Index into cand of the neuron to split: the one whose two sides lower the
        interval Jacobian bound most (the larger of the two children's bounds)."""
        if cand.size == 1:
            return 0
        states = [torch.as_tensor(st, device=self.device) for st in nd.states]
        B = 2 * cand.size
        batch = [st[None].repeat(B, 1) for st in states]
        idx = torch.arange(cand.size, device=self.device)
        cj = torch.as_tensor(cand, device=self.device)
        batch[k][2 * idx, cj] = 1
        batch[k][2 * idx + 1, cj] = 0
        ubs = interval_norm(self.net, batch, self.norm, self.err).reshape(-1, 2).amax(1)
        return int(torch.argmin(ubs))

    # ------------------------------------------------------------------ the loop
    def dive(self, nd: Node, limit: int) -> None:
        """Depth first from `nd`, always into the child with the largest bound, until the
        path ends in a resolved or pruned node (finds good incumbents early); the other
        children are queued."""
        for _ in range(limit):
            if self.late():
                break
            kids = self.bound(self.children(nd))
            self.nodes += 1
            if not kids:
                return
            kids.sort(key=lambda c: -c.ub)
            for c in kids[1:]:
                self.push(c)
            nd = kids[0]
            if nd.ub <= self.target():
                self.closed = max(self.closed, nd.ub)
                return
        self.push(nd)

    def run(self, time_limit: float | None, node_limit: int | None, progress: bool
            ) -> str:
        start = time.perf_counter()
        self.deadline = None if time_limit is None else start + time_limit
        try:
            self.initial()
        except Exception as exc:  # noqa: BLE001 - the lower bound starts lower
            self.fail("first incumbent", exc)
        for nd in self.bound([self.root(ci) for ci in range(len(self.charts))]):
            self.push(nd)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(file=self.stderr, unit="node", dynamic_ncols=True, leave=False)
        stopped = "done"
        last = 0.0
        since = 0  # batches since the lower bound last rose
        lower = self.best.lower
        boost_at = ROOT_BOUNDS_AFTER if time_limit is None else min(
            ROOT_BOUNDS_AFTER, ROOT_BOUNDS_AT * time_limit)
        budget = None if time_limit is None else ROOT_BOUNDS_SHARE * time_limit
        try:
            while self.heap:
                if -self.heap[0][0] <= self.target() or self.outside_upper <= self.target():
                    break
                if not self.boosted and time.perf_counter() - start >= boost_at:
                    self.boost(budget)
                    continue
                if self.late():
                    stopped = "time_limit"
                    break
                if node_limit is not None and self.nodes >= node_limit:
                    stopped = "node_limit"
                    break
                if self.sdp_worth():
                    _, _, nd = heapq.heappop(self.heap)
                    self.node_sdp_bound(nd)
                    if nd.ub <= self.target():
                        self.closed = max(self.closed, nd.ub)
                    else:
                        self.push(nd)
                    continue
                if since % DIVE_EVERY == 0:
                    _, _, nd = heapq.heappop(self.heap)
                    self.dive(nd, DIVE_DEPTH)
                since = 0 if self.best.lower > lower else since + 1
                lower = self.best.lower
                batch = []
                while self.heap and len(batch) < BATCH:
                    ub, _, nd = heapq.heappop(self.heap)
                    if -ub <= self.target():
                        self.closed = max(self.closed, -ub)
                        continue
                    batch.append(nd)
                children = []
                for nd in batch:
                    children.extend(self.children(nd))
                self.nodes += len(batch)
                for nd in self.bound(children):
                    self.push(nd)
                if bar is not None and time.perf_counter() - last > 0.2:
                    last = time.perf_counter()
                    up = self.upper()
                    bar.update(self.nodes - bar.n)
                    bar.set_postfix_str(f"lower {self.best.lower:.10g} upper {up:.10g} "
                                        f"gap {up / max(self.best.lower, 1e-300) - 1:.2e}")
            if not self.boosted and self.upper() > self.target():
                # stopped early, or finished with nodes left unresolved: still no wider
                # than the toolkit's own bounds
                self.boost(budget)
        except KeyboardInterrupt:
            stopped = "interrupt"
        finally:
            if bar is not None:
                bar.close()
        return stopped


@contextlib.contextmanager
def _progress_stream(progress: bool) -> Iterator[Any]:
    """A text stream on a duplicate of file descriptor 2 (still the terminal while the
    search silences native output), or None."""
    if not progress:
        yield None
        return
    sys.stderr.flush()
    stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    try:
        yield stream
    finally:
        stream.close()


def _slopes(net: Network) -> list[float]:
    out = []
    for a in net.mlp()[2]:
        if a.name == "relu":
            out.append(0.0)
        elif a.name == "leaky_relu":
            s = float(a.negative_slope)
            if not 0.0 <= s <= 1.0:
                raise UnsupportedError(f"bab: leaky ReLU slope {s} outside [0, 1]")
            out.append(s)
        else:
            raise UnsupportedError(f"bab needs ReLU or leaky-ReLU activations, not {a.name}")
    return out


def global_radius(net: Net) -> float:
    """Half-width of the central box of the global charts: where the first layer's kinks
    lie (the charts are exact for any radius; this only balances them)."""
    W, b = net.weights[0], net.biases[0]
    rows = np.linalg.norm(W, axis=1)
    # a numerically dead unit (weight decay leaves rows of 1e-17 beside rows of 1) has its
    # kink 1e16 away: a chart that wide leaves the regions near the data below float64's
    # resolution of the chart, so it sets no radius
    ok = rows > DEAD_ROW_RTOL * rows.max(initial=0.0)
    return max(1.0, 3.0 * float(np.max(np.abs(b[ok]) / rows[ok]))) if ok.any() else 1.0


@method("bab", kind="exact", cost="anytime", norms=("2", "inf", "1"), mlp_only=True,
        activations=("relu", "leaky_relu"), domain="optional", domain_kinds=("box", "ball"),
        sorts_as_relu=True,
        summary="exact: branch-and-bound over input boxes and neurons, anytime certified gap")
def bab(net: Network, *, norm: str = "2", domain: Domain | None = None,
        time_limit: float | None = None, node_limit: int | None = None,
        progress: bool = False, rtol: float = 1e-9, seed: int = 0, device: str | None = None,
        lipsdp: bool = True, walk: bool = True, node_lipsdp: bool = True) -> Bound:
    """Exact Lipschitz constant of a ReLU/leaky-ReLU MLP, global or over a box or l2 ball.

    Reference: branch-and-bound on activation patterns as in LipBaB (Bhowmick, D'Souza &
    Raghavan, ECML-PKDD 2021) and ExLipBaB (Splittgerber, arXiv 2602.15499, 2026); symbolic
    interval bounds (Wang et al., USENIX Security 2018); global charts of the homogenised
    network (this project). Idea: best-first search over input boxes and neuron splits, each
    node bounded above by a certified Jacobian bound and below by a secant at a point inside.
    A run still open after a second (or 5 % of time_limit) also takes the toolkit's best
    certified bounds on the net, each given 15 % of time_limit: LipSDP-Neuron (l2 only;
    `lipsdp=False` skips it) caps the upper end and region-walk's certified secant
    (`walk=False` skips it) raises the lower end; details["lower_from"] and
    details["upper_from"] name the method behind each end. A sub-solve that fails (an LP,
    a least-squares refit, a bound) leaves its node unresolved: kept in the upper bound with
    the bound it had, never expanded, and the run is then not called exact.
    Guarantee: kind "exact" only when the certified gap is closed (upper <= lower (1 + rtol));
    stopped by time_limit, node_limit or Ctrl-C it returns kind "upper" with the proven upper
    bound, details["lower"] the certified lower bound with its witness pair, and the gap.
    """
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise InputError(f"bab: time_limit must be positive, got {time_limit}")
    if node_limit is not None and (isinstance(node_limit, bool) or not isinstance(
            node_limit, int) or node_limit < 1):
        raise InputError(f"bab: node_limit must be a positive integer, got {node_limit}")
    if not (isinstance(rtol, int | float) and math.isfinite(rtol) and 0 < rtol < 1):
        raise InputError(f"bab: rtol must lie in (0, 1), got {rtol}")
    if domain is not None and domain.anchored:
        raise UnsupportedError("bab computes the constant over a set, not anchored at a point")
    for name, flag in (("lipsdp", lipsdp), ("walk", walk), ("node_lipsdp", node_lipsdp)):
        if not isinstance(flag, bool):
            raise InputError(f"bab: {name} must be true or false, got {flag!r}")
    slopes = _slopes(net)
    weights, biases, ident = merge_identity_pairs(*net.mlp()[:2], slopes)
    mlp = Net.build(weights, biases, slopes, ident)
    start = time.perf_counter()
    if mlp.hidden == 0:
        from ..core.linalg import operator_norm

        value = operator_norm(weights[0], norm)
        return Bound("bab", "exact", value, norm, certified=True, domain=domain,
                     details={"lower": value, "upper": value, "gap": 0.0, "nodes": 0})
    if domain is None:
        R = global_radius(mlp)
        n = weights[0].shape[1]
        bisect = n <= BOX_SPLIT_DIM and mlp.neurons >= BOX_SPLIT_NEURONS
        charts = face_charts(mlp, R) if bisect else [cone_chart(mlp, R)]
    else:
        charts = [box_chart(mlp, domain.lower.ravel().astype(np.float64),
                            domain.upper.ravel().astype(np.float64))]
    search = _Search(net, mlp, charts, norm, domain, float(rtol), device, seed)
    search.use_lipsdp, search.use_walk, search.node_sdp = lipsdp, walk, node_lipsdp
    threads = torch.get_num_threads()
    # the batches are small: one thread avoids intra-op synchronisation that was up to 30x
    # slower on two shared cores
    torch.set_num_threads(1)
    try:
        # HiGHS runs thousands of tiny LPs: the descriptors are silenced once for the whole
        # search, and the progress bar writes to a duplicate of the real stderr
        with _progress_stream(progress) as stream, native_silence():
            search.stderr = stream
            stopped = search.run(time_limit, node_limit, progress)
            try:
                search.sharpen()
            except Exception as exc:  # noqa: BLE001 - the float64 secant stands
                search.fail("exact secant", exc)
    finally:
        torch.set_num_threads(threads)
    lower, upper = search.best.lower, search.upper()
    if search.outside_upper < search.own_upper():
        search.sources["upper"] = "lipsdp-neuron"
    gap = upper / lower - 1 if lower > 0 else math.inf
    details: dict[str, Any] = {
        "lower": lower, "upper": upper, "gap": gap, "nodes": search.nodes,
        "regions": search.regions, "lps": sum(lp.count for lp in search.lp.values()),
        "charts": [c.name for c in charts], "stopped": stopped,
        "witness": {"x": search.best.x, "y": search.best.y},
        "lower_from": search.sources["lower"], "upper_from": search.sources["upper"],
        "identity_units": mlp.identities,
        "upper_certificate": (
            "max over the open, pruned and resolved nodes of certified Jacobian bounds "
            "(symbolic interval bounds, interval hull or enumerated completions, float64 "
            "error added)" + (", capped by the certified LipSDP-Neuron bound"
                              if search.sources["upper"] != "bab" else ""))}
    if search.root_bounds:
        details["root_bounds"] = search.root_bounds
    if search.sdp_count:
        details["node_lipsdp"] = {"nodes": search.sdp_count, "seconds": search.sdp_seconds}
    if search.slivers:
        details["slivers"] = search.slivers
    if search.failed:
        details["failed_subsolves"] = search.failed
        details["failures"] = search.failures
        details["unresolved"] = search.unresolved
    seconds = time.perf_counter() - start
    closed = stopped == "done" and upper <= lower * (1 + rtol) and lower > 0
    if closed:
        value = min(max(search.best.value, lower), upper)
        return Bound("bab", "exact", value, norm, certified=True, seconds=seconds,
                     domain=domain, details=details)
    if stopped == "done" and upper <= lower * (1 + rtol):
        # the zero function: every node closed at 0
        return Bound("bab", "exact", 0.0, norm, certified=True, seconds=seconds,
                     domain=domain, details=details)
    status = "timeout" if stopped != "done" else "inaccurate"
    if stopped == "done":
        why = []
        if search.slivers:
            why.append(f"{search.slivers} region(s) too thin to resolve")
        if search.unresolved:
            why.append(f"{search.unresolved} node(s) whose sub-solve failed")
        details["message"] = (f"{' and '.join(why) or 'open nodes'} may hold a larger "
                              "slope: the proven bound is reported")
    return Bound("bab", "upper", upper, norm, certified=True, status=status, seconds=seconds,
                 domain=domain, details=details)
