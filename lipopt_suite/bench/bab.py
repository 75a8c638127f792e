"""Branch-and-bound (`bab`): exact global l2 constants beyond toy size, with region
enumeration (`regions`, limits raised, capped in time) as the same-run baseline.

* The tabular nets (problems/tabular/, trained on scikit-learn's iris, wine and diabetes):
  4-6-6-3, 11-12-12-1, 9-16-16-1. Goal: exact (gap <= 1e-9 relative) in <= 60 s each.
* problems/scaman2018/mlp10.npz (2-d input, 9 hidden layers of 20): goal <= 120 s; and the
  certified gap after 60 s on each Scaman net.
* 13-20-16-8-3 (wine classifier): the certified gap after 10 minutes (skipped in quick mode).
* l_inf and l_1 over the lipMIP width series boxes ([0, 1]^2): bab beside `mip`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

TITLE = "bab: exact global l2 on tabular nets (goal <= 60 s), scaman mlp10 (goal <= 120 s)"
ROOT = Path(__file__).resolve().parents[2] / "problems"
TABULAR = ("iris_4_6_6_3", "wine_11_12_12_1", "diabetes_9_16_16_1")
GOAL_SECONDS = 60.0
MLP10_GOAL_SECONDS = 120.0
GAP_SECONDS = 60.0
LONG_SECONDS = 600.0
BASELINE_LIMIT = 120.0


def _timed(net: Any, method: str, **options: Any) -> tuple[Any, float]:
    from ..registry import estimate

    start = time.perf_counter()
    b = estimate(net, method, **options)
    return b, time.perf_counter() - start


def _row(b: Any, seconds: float) -> dict[str, Any]:
    return {"kind": b.kind, "value": b.value, "lower": b.details.get("lower"),
            "gap": b.details.get("gap"), "nodes": b.details.get("nodes"),
            "seconds": seconds, "status": b.status}


def run(quick: bool = False) -> dict[str, Any]:
    from ..bound import Domain
    from ..io import load
    from ..registry import estimate

    estimate(load(ROOT / "exact" / "tiny0.npz"), "bab")  # imports and first calls out of timings
    out: dict[str, Any] = {}
    baseline_limit = 30.0 if quick else BASELINE_LIMIT
    for name in TABULAR[:1] if quick else TABULAR:
        net = load(ROOT / "tabular" / f"{name}.npz")
        b, t = _timed(net, "bab", time_limit=GOAL_SECONDS * 5)
        r, tr = _timed(net, "regions", max_input_dim=net.input_dim, max_hidden_units=10_000,
                       max_regions=10_000_000, time_limit=baseline_limit)
        out[name] = {**_row(b, t), "goal_met": b.kind == "exact" and t <= GOAL_SECONDS,
                     "regions_kind": r.kind, "regions_value": r.value, "regions_seconds": tr,
                     "agrees_with_regions": bool(r.kind == "exact" and abs(r.value - b.value)
                                                 <= 1e-8 * b.value),
                     "speedup_vs_regions": tr / t if t > 0 else None}
    layers = (4, 10) if quick else (4, 5, 7, 10)
    for L in layers:
        net = load(ROOT / "scaman2018" / f"mlp{L}.npz")
        b, t = _timed(net, "bab", time_limit=GAP_SECONDS)
        out[f"scaman_mlp{L}_60s"] = _row(b, t)
    if not quick:
        net = load(ROOT / "scaman2018" / "mlp10.npz")
        b, t = _timed(net, "bab", time_limit=MLP10_GOAL_SECONDS)
        r, tr = _timed(net, "regions", max_hidden_units=10_000, time_limit=MLP10_GOAL_SECONDS)
        out["scaman_mlp10"] = {**_row(b, t), "goal_met": b.kind == "exact"
                               and t <= MLP10_GOAL_SECONDS, "regions_kind": r.kind,
                               "regions_value": r.value, "regions_seconds": tr}
        net = load(ROOT / "tabular" / "wine_13_20_16_8_3.npz")
        b, t = _timed(net, "bab", time_limit=LONG_SECONDS)
        out["wine_13_20_16_8_3_600s"] = _row(b, t)
    box = Domain.box(np.full(2, 0.5), 0.5)
    for i in (1,) if quick else (1, 2, 3):
        net = load(ROOT / "exact" / f"lipmip_width{i}.npz")
        for norm in ("inf", "1"):
            b, t = _timed(net, "bab", norm=norm, domain=box, time_limit=GOAL_SECONDS * 5)
            m, tm = _timed(net, "mip", norm=norm, domain=box, time_limit=GOAL_SECONDS * 5)
            out[f"lipmip_width{i}_l{norm}"] = {
                **_row(b, t), "mip_kind": m.kind, "mip_value": m.value, "mip_seconds": tm,
                "agrees_with_mip": bool(m.kind == "exact" and b.kind == "exact"
                                        and abs(m.value - b.value) <= 1e-6 * m.value),
                "speedup_vs_mip": tm / t if t > 0 else None}
    return out
