"""Region walk: a lower bound that climbs from linear region to linear region.

A ReLU or leaky-ReLU MLP is affine on each full-dimensional region of its activation
pattern, and its constant (global, or over a ball or box) is the largest ||J||_{p->p} over
the regions (meeting the set). Flipping one unit of a pattern changes the Jacobian by a
rank-one term, J' = J + delta S_k[:, i] A_k[i], so the norms of every single-flip neighbour
cost one batched product; an LP (HiGHS) decides whether the flipped pattern is a
full-dimensional region (inside the set) and gives its Chebyshev centre. The walk moves to
the best neighbour not yet visited (tabu search: uphill while it can, across plateaus and
out of local maxima when it cannot), from the best regions of the `random` search at every
scale (including the cones of the bias-free network pulled back to finite points), with
restarts. The best regions are certified by float64 secants inside their inscribed balls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..bound import Bound, Domain
from ..core.lower import (
    PiecewiseLinearMLP,
    SearchSpace,
    _sampled,
    _space,
    better,
    matrix_norms,
    pl_mlp,
    search_norms,
    witness_pair,
)
from ..network import Network
from ..registry import method
from .regions import FULL_DIM_RADIUS

# Flips not seen as facets by ray shooting are still checked by LP when their norm beats the
# current region's, at most this many per step (a small facet can hide from the rays).
EXTRA_CHECKS = 3
# Random rays shot from the centre, per input dimension and at most MAX_RAYS, besides one
# along each constraint's normal (those find most facets by themselves).
RAYS_PER_DIM = 4
MAX_RAYS = 64
# Cutting-plane rounds that fit the Chebyshev ball into an l2-ball domain.
BALL_CUTS = 30
# Regions certified by secants at the end (best by Jacobian norm).
CERTIFIED_REGIONS = 3


@dataclass
class _Region:
    pattern: list[np.ndarray]  # z > 0 per hidden layer
    A: list[np.ndarray]  # pre-activation maps of the hidden layers on the region
    c: list[np.ndarray]
    J: np.ndarray
    value: float
    point: np.ndarray | None = None
    radius: float = 0.0


def _key(pattern: list[np.ndarray]) -> bytes:
    return np.packbits(np.concatenate(pattern)).tobytes() if pattern else b""


def _affine(mlp: PiecewiseLinearMLP, pattern: list[np.ndarray], norm: str) -> _Region:
    """The region of one pattern: its pre-activation maps, Jacobian and Jacobian norm."""
    A, c = mlp.weights[0], mlp.biases[0]
    As, cs = [], []
    for k, s in enumerate(mlp.slopes(pattern)):
        As.append(A)
        cs.append(c)
        A = mlp.weights[k + 1] @ (s[:, None] * A)
        c = mlp.weights[k + 1] @ (s * c) + mlp.biases[k + 1]
    return _Region(pattern, As, cs, A, float(matrix_norms(A[None], norm)[0]))


def _constraints(region: _Region) -> tuple[np.ndarray, np.ndarray]:
    """G x <= h: every unit on the side its pattern says (a^T x + c >= 0 when on)."""
    if not region.pattern:
        return np.zeros((0, region.J.shape[1])), np.zeros(0)
    s = np.where(np.concatenate(region.pattern), 1.0, -1.0)
    return -s[:, None] * np.vstack(region.A), s * np.concatenate(region.c)


def _neighbour_norms(mlp: PiecewiseLinearMLP, region: _Region, norm: str) -> np.ndarray:
    """||J'|| for the pattern with each single unit flipped (rank-one updates of J)."""
    slopes = mlp.slopes(region.pattern)
    K = len(slopes)
    blocks: list[np.ndarray] = [np.empty(0)] * K
    S = mlp.weights[-1]
    for k in range(K - 1, -1, -1):
        on = region.pattern[k]
        delta = np.where(on, mlp.negative[k] - 1.0, 1.0 - mlp.negative[k])
        # (w_k, m, n): J + delta_i S[:, i] A_k[i]^T
        blocks[k] = region.J[None] + (delta[:, None, None] * S.T[:, :, None]
                                      * region.A[k][:, None, :])
        S = (S * slopes[k]) @ mlp.weights[k]
    if not blocks:
        return np.zeros(0)
    return search_norms(np.concatenate(blocks), norm)


class _Chebyshev:
    """Largest ball inside {G x <= h} (and the domain), by one reusable HiGHS model."""

    def __init__(self, n: int, space: SearchSpace, cap: float) -> None:
        import highspy

        self.highspy = highspy
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        self.n = n
        self.space = space
        self.cap = cap
        self.count = 0

    def solve(self, G: np.ndarray, h: np.ndarray) -> tuple[float, np.ndarray]:
        """(radius, centre), radius -inf when the set is empty."""
        hs, n, inf = self.highs, self.n, self.highspy.kHighsInf
        dom = self.space.domain
        rows = [np.hstack([G, np.linalg.norm(G, axis=1, keepdims=True)])]
        rhs = [h]
        if dom is not None:  # the ball of radius t inside the box [lower, upper]
            eye = np.eye(n)
            ones = np.ones((n, 1))
            rows += [np.hstack([eye, ones]), np.hstack([-eye, ones])]
            rhs += [self.space.upper, -self.space.lower]
        M, b = np.vstack(rows), np.concatenate(rhs)
        hs.clearModel()
        hs.addVars(n + 1, np.full(n + 1, -inf), np.append(np.full(n, inf), self.cap))
        hs.changeColCost(n, -1.0)
        self._add(M, b)
        for _ in range(BALL_CUTS if dom is not None and dom.kind == "ball" else 1):
            hs.run()
            self.count += 1
            if hs.getModelStatus() != self.highspy.HighsModelStatus.kOptimal:
                return -np.inf, np.zeros(n)
            sol = np.asarray(hs.getSolution().col_value)
            x, t = sol[:n], float(sol[n])
            if dom is None or dom.kind != "ball":
                return t, x
            d = x - dom.center.ravel()
            dist = float(np.linalg.norm(d))
            r = float(dom.radius)
            if dist + t <= r * (1 + 1e-9) or dist == 0.0:
                break
            g = d / dist  # outer cut: g^T (x - c) + t <= r
            self._add(np.append(g, 1.0)[None], np.array([r + g @ dom.center.ravel()]))
        return min(t, float(dom.radius) - dist), x

    def _add(self, M: np.ndarray, b: np.ndarray) -> None:
        k, width = M.shape
        self.highs.addRows(k, np.full(k, -self.highspy.kHighsInf), b, M.size,
                           np.arange(0, M.size, width, dtype=np.int32),
                           np.tile(np.arange(width, dtype=np.int32), k), M.ravel())


class _Walk:
    """The walk's state: the network, the norm, the search space, the HiGHS model and every
    pattern met so far (its region, or None when it is not full-dimensional in the set)."""

    def __init__(self, mlp: PiecewiseLinearMLP, norm: str, space: SearchSpace, eps: float,
                 rng: np.random.Generator) -> None:
        self.mlp, self.norm, self.space, self.eps, self.rng = mlp, norm, space, eps, rng
        self.lp = _Chebyshev(mlp.input_dim, space, space.half)
        self.cache: dict[bytes, _Region | None] = {}
        self.crossings = 0

    def inscribed(self, G: np.ndarray, h: np.ndarray, x: np.ndarray) -> float:
        """Radius of the largest ball centred at x inside {G x <= h} and the domain."""
        norms = np.linalg.norm(G, axis=1)
        slack = h - G @ x
        live = norms > 0
        if np.any(slack[~live] < 0):
            return -np.inf
        r = float(np.min(slack[live] / norms[live])) if live.any() else self.space.half
        dom = self.space.domain
        if dom is not None:
            if dom.kind == "ball":
                r = min(r, float(dom.radius) - float(np.linalg.norm(x - dom.center.ravel())))
            else:
                r = min(r, float(np.min(np.minimum(x - self.space.lower,
                                                   self.space.upper - x))))
        return r

    def region(self, pattern: list[np.ndarray], point: np.ndarray | None = None,
               ray: np.ndarray | None = None) -> _Region | None:
        """The full-dimensional region of a pattern (inside the domain), or None. A `point`
        on its boundary and a `ray` into it (a facet crossing) give an interior point, the
        middle of the ray's chord, without an LP; otherwise (or if that fails) the LP's
        Chebyshev centre decides."""
        key = _key(pattern)
        if key not in self.cache:
            reg = _affine(self.mlp, pattern, self.norm)
            G, h = _constraints(reg)
            x = None
            if point is not None:
                x = point if ray is None else self._chord_middle(G, h, point, ray)
            if x is not None:
                t = self.inscribed(G, h, x)
                if t > self.eps and self._has(x, pattern):
                    reg.point, reg.radius = x, t
                    self.cache[key] = reg
                    self.crossings += 1
                    return reg
            self.cache[key] = reg if self.centre(reg) else None
        return self.cache[key]

    def centre(self, reg: _Region) -> bool:
        """Move the region's point to its Chebyshev centre (LP); False if it has none."""
        t, x = self.lp.solve(*_constraints(reg))
        if t > self.eps and self._has(x, reg.pattern):
            if t > reg.radius:
                reg.point, reg.radius = x, t
            return True
        return reg.point is not None

    def _has(self, x: np.ndarray, pattern: list[np.ndarray]) -> bool:
        return all((p[0] == q).all() for p, q in zip(self.mlp.patterns(x[None]), pattern))

    def _chord_middle(self, G: np.ndarray, h: np.ndarray, x: np.ndarray, d: np.ndarray
                      ) -> np.ndarray:
        rate = G @ d
        slack = np.maximum(h - G @ x, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            exits = np.where(rate > 0, slack / rate, np.inf)
        length = min(float(exits.min()) if exits.size else np.inf, 2 * self.space.half)
        dom = self.space.domain
        if dom is not None:
            lo, hi = self.space.lower - x, self.space.upper - x
            with np.errstate(divide="ignore", invalid="ignore"):
                box = np.where(d > 0, hi / d, np.where(d < 0, lo / d, np.inf))
            length = min(length, float(box.min()))
        return x + 0.5 * length * d

    def facets(self, reg: _Region, G: np.ndarray, h: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows of G hit first by rays from the region's point (each one a facet), with the
        ray that found each and the point where it crosses the facet."""
        n = G.shape[1]
        norms = np.linalg.norm(G, axis=1)
        live = norms > 0
        D = np.vstack([G[live] / norms[live, None],
                       self.rng.standard_normal((min(RAYS_PER_DIM * n, MAX_RAYS), n))])
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        slack = np.maximum(h - G @ reg.point, 0.0)
        rate = D @ G.T
        with np.errstate(divide="ignore", invalid="ignore"):
            hit = np.where(rate > 0, slack / rate, np.inf)
        first = np.argmin(hit, axis=1)
        reach = hit[np.arange(len(D)), first]
        inside = np.isfinite(reach) & self._in_domain(reg.point, D, reach)
        found = np.zeros(len(G), dtype=bool)
        rays = np.zeros_like(G)
        cross = np.zeros_like(G)
        for r in np.flatnonzero(inside)[::-1]:  # the first ray to find a facet wins
            found[first[r]] = True
            rays[first[r]] = D[r]
            cross[first[r]] = reg.point + reach[r] * D[r]
        return found, rays, cross

    def _in_domain(self, x: np.ndarray, D: np.ndarray, t: np.ndarray) -> np.ndarray:
        dom = self.space.domain
        if dom is None:
            return np.ones(len(D), dtype=bool)
        P = x + np.where(np.isfinite(t), t, 0.0)[:, None] * D
        return dom.contains(P, tol=1e-9)

    def climb(self, start: _Region, steps: int, deadline: float | None,
              visited: set[bytes]) -> tuple[_Region, int]:
        """Tabu walk from `start`: the best not-yet-visited feasible neighbour, `steps`
        times. Returns the best region seen and the number of moves."""
        cur = best = start
        visited.add(_key(start.pattern))
        moves = 0
        for _ in range(int(steps)):
            if deadline is not None and time.perf_counter() > deadline:
                break
            G, h = _constraints(cur)
            if not len(G):
                break
            values = _neighbour_norms(self.mlp, cur, self.norm)
            facet, rays, cross = self.facets(cur, G, h)
            flat = np.concatenate(cur.pattern)
            sizes = np.cumsum([0] + [len(p) for p in cur.pattern])
            extra = 0
            nxt = None
            for j in np.argsort(-values, kind="stable"):
                if not facet[j]:
                    if extra >= EXTRA_CHECKS or values[j] <= cur.value:
                        continue
                    extra += 1
                flipped = flat.copy()
                flipped[j] = not flipped[j]
                pattern = [flipped[sizes[k]:sizes[k + 1]] for k in range(len(cur.pattern))]
                key = _key(pattern)
                if key in visited:
                    continue
                reg = (self.region(pattern, cross[j], rays[j]) if facet[j]
                       else self.region(pattern))
                if reg is not None:
                    nxt = reg
                    visited.add(key)
                    break
            if nxt is None:
                break
            cur = nxt
            moves += 1
            if cur.value > best.value:
                best = cur
        return best, moves


@method("region-walk", kind="lower", cost="search", norms=("2", "inf", "1"), mlp_only=True,
        activations=("relu", "leaky_relu"), domain_kinds=("ball", "box"), sorts_as_relu=True,
        summary="tabu walk over linear regions across facets (LPs), from a search at every "
                "scale")
def region_walk(net: Network, *, norm: str = "2", domain: Domain | None = None,
                restarts: int = 8, steps: int = 60, samples: int = 2000, seed: int = 0,
                time_limit: float | None = None, multiscale: bool = True,
                radius: float | None = None, X: Any = None, device: Any = None) -> Bound:
    """From the best distinct regions of the `random` search (same `samples`, `seed`),
    `restarts` tabu walks of `steps` moves each to neighbouring full-dimensional regions
    across facets, choosing the neighbour of largest ||J||_{p->p} (rank-one updates) whose
    region an LP finds (HiGHS, Chebyshev centre; inside the domain when one is given).
    `time_limit` stops the walks early (the bound stays certified).

    Reference: the linear-region view of piecewise-linear networks (Avant & Morgansen,
    IEEE TNNLS 2023, Lemma 1); a local search on the region graph in the spirit of
    tabu search (Glover, ORSA J. Computing, 1989).
    Guarantee: certified lower bound with witness pair (x, y) (never below `random`).
    """
    from ..quiet import native_silence

    start_time = time.perf_counter()
    deadline = None if time_limit is None else start_time + float(time_limit)
    space = _space(net, domain, X, radius)
    rng = np.random.default_rng(seed)
    sampled, P, _, S = _sampled("region-walk", net, norm, domain, space, samples, rng,
                                multiscale, radius is not None, device)
    mlp = pl_mlp(net)
    if not mlp.weights[:-1]:  # affine: one region, which the sample has certified
        return sampled
    eps = FULL_DIM_RADIUS * (1.0 + float(np.abs(space.center).max()) + space.half)
    # distinct patterns of the sample, best first
    flat = np.hstack(mlp.patterns(P))
    order = np.argsort(-S, kind="stable")
    _, first = np.unique(flat[order], axis=0, return_index=True)
    seeds = order[np.sort(first)]
    sizes = np.cumsum([0] + [W.shape[0] for W in mlp.weights[:-1]])
    found: list[_Region] = []
    moves = starts = 0
    stopped = "steps"
    with native_silence():
        walk = _Walk(mlp, norm, space, eps, rng)
        visited: set[bytes] = set()
        for i in seeds:
            if starts >= int(restarts):
                break
            if deadline is not None and time.perf_counter() > deadline:
                stopped = "time_limit"
                break
            pattern = [flat[i, sizes[k]:sizes[k + 1]] for k in range(len(sizes) - 1)]
            if _key(pattern) in visited:
                continue
            reg = walk.region(pattern, P[i])
            if reg is None:
                continue
            starts += 1
            best, m = walk.climb(reg, steps, deadline, visited)
            moves += m
            found.append(best)
        if deadline is not None and time.perf_counter() > deadline:
            stopped = "time_limit"
    found.sort(key=lambda r: -r.value)
    walked = None
    seen: set[bytes] = set()
    for reg in found:
        if len(seen) >= CERTIFIED_REGIONS:
            break
        if _key(reg.pattern) in seen:
            continue
        seen.add(_key(reg.pattern))
        with native_silence():
            walk.centre(reg)  # the largest inscribed ball, for the longest witness pair
        w = witness_pair(net, reg.point, norm, space, inscribed=reg.radius)
        if walked is None or w[0] > walked[0][0]:
            walked = (w, reg)
    extra = {"restarts": starts, "steps": int(steps), "moves": moves, "lps": walk.lp.count,
             "crossings": walk.crossings,
             "regions_seen": len(walk.cache), "stopped": stopped, "samples": int(samples),
             "sampled_value": sampled.value}
    if walked is None:
        return sampled.replace(details={**sampled.details, **extra})
    (value, a, b, grad_norm), reg = walked
    climbed = Bound("region-walk", "lower", value, norm, certified=True, domain=domain,
                    details={"witness": {"x": a, "y": b}, "gradient_norm_at_witness": grad_norm,
                             "best_region_norm": reg.value, "inscribed_radius": reg.radius})
    return better(sampled, climbed, walk_value=value, **extra)
