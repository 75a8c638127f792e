"""Exact methods: hypercube at l = 20 and 26 hidden neurons, mip on the lipMIP width series.

* hypercube: the LIP-CST instance of a G(l, 0.5) graph (every one of the 2^l patterns
  reachable, scalar output) and a random one-hidden-layer net l-l-4 (matrix-valued
  Jacobians), l = 20 and 26. Baseline measured in the same run: plain vertex enumeration
  (core.patterns.max_pattern_norm) of the same maximum, stopped after BASELINE_LIMIT s.
  Goal: exact in <= 10 s at l = 20.
* mip: p = inf on the lipMIP width series 2-20-20i-20-2 (i = 1, 2, 3) over the unit square
  [0, 1]^2, lipMIP's own domain for this series, with HiGHS. Baseline measured in the same
  run: the same program with interval-arithmetic big-M constants only (no LP tightening).
  Goal: proven optimal in <= 60 s each.
Quick mode: l = 14 and 18, width i = 1, short limits.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

TITLE = "exact methods: hypercube at l = 20/26 (goal <= 10 s at 20), mip on lipMIP widths " \
        "(goal optimal <= 60 s)"
HYPERCUBE_GOAL_SECONDS = 10.0
MIP_GOAL_SECONDS = 60.0
BASELINE_LIMIT = 120.0
MIP_LIMIT = 300.0


def _hypercube(quick: bool) -> dict[str, Any]:
    from ..core.patterns import max_pattern_norm
    from ..harness.nets import random_mlp
    from ..registry import estimate
    from ..solvers.lipcst import lipcst_instance

    sizes = (14, 18) if quick else (20, 26)
    limit = 10.0 if quick else BASELINE_LIMIT
    estimate(random_mlp([4, 4, 1]), "hypercube")  # imports and first-call costs out of timings
    out: dict[str, Any] = {}
    for l in sizes:
        for family, net in (("lipcst", lipcst_instance(l, 0.5, seed=l)[0]),
                            ("random", random_mlp([l, l, 4], seed=l))):
            start = time.perf_counter()
            b = estimate(net, "hypercube", time_limit=600.0)
            seconds = time.perf_counter() - start
            (M1, M2), _, _ = net.mlp()
            start = time.perf_counter()
            base = max_pattern_norm(M2, M1, time_limit=limit)
            base_seconds = time.perf_counter() - start
            key = f"hypercube_{family}_l{l}"
            out[key] = {
                "seconds": seconds, "kind": b.kind, "value": b.value,
                "nodes": b.details.get("nodes"), "patterns": b.details.get("patterns"),
                "baseline_enumeration_seconds": base_seconds,
                "baseline_complete": base.complete,
                "agrees_with_baseline": bool(base.complete and abs(base.lower - b.value)
                                             <= 1e-9 * b.value),
                "speedup": base_seconds / seconds if seconds > 0 else None,
            }
            if l == 20:
                out[key]["meets_goal"] = b.kind == "exact" and seconds <= HYPERCUBE_GOAL_SECONDS
    return out


def _mip(quick: bool) -> dict[str, Any]:
    from ..bound import Domain
    from ..harness.nets import lipmip_width
    from ..registry import estimate

    box = Domain.from_bounds(np.zeros(2), np.ones(2))
    limit = 60.0 if quick else MIP_LIMIT
    out: dict[str, Any] = {}
    for i in ((1,) if quick else (1, 2, 3)):
        net = lipmip_width(i)
        runs = {}
        for label, tighten in (("lp_tightened", True), ("baseline_interval_only", False)):
            start = time.perf_counter()
            b = estimate(net, "mip", norm="inf", domain=box, time_limit=limit,
                         tighten=tighten)
            runs[label] = {"seconds": time.perf_counter() - start, "kind": b.kind,
                           "value": b.value, "status": b.status,
                           "binaries": b.details.get("binaries"),
                           "solver": b.details.get("solver")}
        main = runs["lp_tightened"]
        main["meets_goal"] = main["kind"] == "exact" and main["seconds"] <= MIP_GOAL_SECONDS
        out[f"mip_width{i}"] = runs
    return out


def run(quick: bool = False) -> dict[str, Any]:
    figures = {"hypercube_goal_seconds": HYPERCUBE_GOAL_SECONDS,
               "mip_goal_seconds": MIP_GOAL_SECONDS}
    figures.update(_hypercube(quick))
    figures.update(_mip(quick))
    return figures
