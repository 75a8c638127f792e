"""`sandwich` against the default preset's full run, on every MLP problem of the suite.

For each MLP problem of the default preset (problems/manifest.toml), each norm and each
radius it is run in, `sandwich(net, budget=60)` (the network loaded afresh, so that no
problem profits from another's memoised work) is set beside the committed reference
results/default: its tightest certified upper bound (an exact value counts as one) and its
best certified lower bound, each method of that run having had its own 60 s job.
Goal: upper <= reference upper (1 + 1e-6) and lower >= reference lower (1 - 1e-6) on every
problem, within the 60 s budget each. The figures are the ratios to the reference (timings
on a shared machine are noisy; the budget is what bounds them). Quick mode: four problems,
20 s each.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

TITLE = "sandwich: 60 s per MLP problem vs the default preset's best bounds (goal within 1e-6)"
BUDGET = 60.0
QUICK_BUDGET = 20.0
QUICK_PROBLEMS = ("tiny0", "scaman_mlp4", "lipsdp_depth2", "digits_mlp")
GOAL_RTOL = 1e-6
REFERENCE = Path(__file__).resolve().parents[2] / "results" / "default" / "records.jsonl"
log = logging.getLogger(__name__)


def reference(records: list[dict[str, Any]]) -> dict[tuple[str, str, Any], dict[str, Any]]:
    """Per (problem, norm, radius): the tightest certified upper bound (exact values count;
    a domain's rows also take the global uppers) and the best certified lower bound of the
    same quantity or a smaller one, with the methods that gave them."""
    from ..harness.report import KNOWN, USABLE_STATUS

    def sound(r: dict[str, Any]) -> bool:
        v = r.get("value")
        return (r.get("certified") and r.get("status") in USABLE_STATUS and v is not None
                and not isinstance(v, str) and math.isfinite(float(v)) and r["method"] != KNOWN)

    out: dict[tuple[str, str, Any], dict[str, Any]] = {}
    for r in records:
        if r.get("radius") is None or not sound(r):
            continue
        out.setdefault((r["problem"], r["norm"], r["radius"]), {})
    for r in records:
        if r.get("radius") is None and sound(r) and r["kind"] in ("lower", "exact"):
            out.setdefault((r["problem"], r["norm"], None), {})
    for key, ref in out.items():
        problem, norm, radius = key
        rows = [r for r in records if sound(r) and r["problem"] == problem and r["norm"] == norm
                and (r.get("radius") == radius or (r.get("radius") is None
                                                   and r["kind"] == "upper"))]
        ups = [r for r in rows if r["kind"] in ("upper", "exact")]
        lows = [r for r in rows if r["kind"] in ("lower", "exact") and r.get("radius") == radius]
        if ups:
            best = min(ups, key=lambda r: float(r["value"]))
            ref.update(upper=float(best["value"]), upper_method=best["method"])
        if lows:
            best = max(lows, key=lambda r: float(r["value"]))
            ref.update(lower=float(best["value"]), lower_method=best["method"])
    return out


def _problems(quick: bool) -> list[Any]:
    from ..harness.problems import REPO_PROBLEMS, get_preset, load_manifest

    manifest = load_manifest(REPO_PROBLEMS)
    names = get_preset("default").problem_names(manifest)
    if quick:
        names = [n for n in names if n in QUICK_PROBLEMS]
    return [manifest[n] for n in names]


def _domain(problem: Any, radius: float | None, extras: dict[str, Any]) -> Any:
    from ..bound import Domain

    if radius is None:
        return None
    spec = problem.domain
    if spec.kind == "box":
        return Domain.box(extras["center"], radius)
    return Domain.ball(extras["center"], radius, anchored=spec.anchored)


def run(quick: bool = False) -> dict[str, Any]:
    from ..errors import InputError
    from ..harness.sandwich import sandwich
    from ..io import load_problem

    refs = reference([json.loads(line) for line in REFERENCE.read_text().splitlines()
                      if line.strip()])
    budget = QUICK_BUDGET if quick else BUDGET
    rows: dict[str, Any] = {}
    start = time.perf_counter()
    for problem in _problems(quick):
        net, _ = load_problem(problem.path)
        try:
            net.mlp(groupsort=True)
        except InputError:
            continue  # CNNs and graphs: not MLP problems
        for (name, norm, radius), ref in sorted(refs.items(), key=lambda kv: str(kv[0])):
            if name != problem.name or "upper" not in ref or "lower" not in ref:
                continue
            net, extras = load_problem(problem.path)  # afresh: no memoised work shared
            s = sandwich(net, budget=budget, norm=norm,
                         domain=_domain(problem, radius, extras), X=extras.get("X"))
            up_ratio = s.upper.value / ref["upper"]
            low_ratio = s.lower.value / ref["lower"] if ref["lower"] > 0 else math.nan
            key = f"{name}|l{norm}|{'global' if radius is None else f'r={radius:g}'}"
            rows[key] = {
                "lower": s.lower.value, "upper": s.upper.value, "exact": s.exact,
                "status": s.status, "seconds": s.seconds,
                "lower_methods": list(s.lower_methods),
                "upper_methods": list(s.upper_methods),
                "reference_lower": ref["lower"], "reference_lower_method": ref["lower_method"],
                "reference_upper": ref["upper"], "reference_upper_method": ref["upper_method"],
                "upper_over_reference": up_ratio, "lower_over_reference": low_ratio,
                "meets_goal": bool(up_ratio <= 1 + GOAL_RTOL and low_ratio >= 1 - GOAL_RTOL)}
            log.info("%s %s", key, json.dumps(rows[key]))
    missed = sorted(k for k, r in rows.items() if not r["meets_goal"])
    return {"budget_seconds": budget, "problems": len(rows),
            "meets_goal": len(rows) - len(missed), "missed": missed,
            "max_upper_over_reference": max((r["upper_over_reference"] for r in rows.values()),
                                            default=None),
            "min_lower_over_reference": min((r["lower_over_reference"] for r in rows.values()),
                                            default=None),
            "max_seconds": max((r["seconds"] for r in rows.values()), default=None),
            "total_seconds": time.perf_counter() - start, "rows": rows}
