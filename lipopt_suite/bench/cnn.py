"""Convolutional and residual networks through their exact unrolling: LipSDP and the region
walk on the shipped CNNs, against AutoLip.

Goals (2 CPU cores, l2, global): certified upper / best certified lower <= 1.5 on scaman
cnn4, cnn5, cnn7, cnn10, digits_cnn, digits_resnet and residual_mlp; LipSDP on cnn10 (4,608
hidden units) in <= 120 s, on the 8x8 digits CNNs in <= 30 s. Baseline, measured in the
same run: AutoLip (the only certified upper bound these networks had before unrolling) and
its ratio to the best certified lower bound. Each method runs with a time limit of
`TIME_LIMIT` seconds (a child process where the method has no limit of its own); a method
that refuses the network (a graph it cannot unroll) is recorded with its message.
"""

from __future__ import annotations

import math
import time
from typing import Any

TITLE = "CNNs and residual nets unrolled into MLPs: LipSDP and region walks vs AutoLip"
TIME_LIMIT = 120.0
PROBLEMS = ("scaman_cnn4", "scaman_cnn5", "scaman_cnn7", "scaman_cnn10", "digits_cnn",
            "digits_resnet", "residual_mlp")
QUICK_PROBLEMS = ("scaman_cnn4", "digits_cnn", "residual_mlp")
UPPER = ("autolip", "lipsdp-neuron", "lipsdp-layer")
LOWER = ("gradient-ascent", "region-walk")
OPTIONS = {"gradient-ascent": {"restarts": 8, "steps": 200}}


def _bound(path: str, method: str, options: dict[str, Any]) -> Any:
    """One bound, in a child process (module level so that it can be sent there)."""
    from ..io import load
    from ..registry import estimate

    return estimate(load(path), method, **options)


def _run(path: str, method: str) -> dict[str, Any]:
    from ..errors import InputError
    from ..io import load
    from ..limits import call_with_limit
    from ..registry import check_applicable, get, option_names

    info = get(method)
    options = dict(OPTIONS.get(method, {}))
    try:
        check_applicable(info, load(path), "2", None, options)
    except InputError as exc:
        return {"status": "refused", "message": str(exc)}
    inner = "time_limit" in option_names(info)
    if inner:
        options["time_limit"] = TIME_LIMIT
    start = time.perf_counter()
    out = call_with_limit(_bound, path, method, options,
                          time_limit=None if inner else TIME_LIMIT)
    seconds = time.perf_counter() - start
    if out.status != "ok":
        return {"status": out.status, "seconds": seconds, "message": out.message}
    b = out.value
    row = {"value": b.value, "kind": b.kind, "certified": b.certified, "status": b.status,
           "seconds": seconds}
    if "unrolled" in b.details:
        row["unrolled"] = {k: b.details["unrolled"][k] for k in ("sizes", "hidden_units",
                                                                 "entries")}
    return row


def run(quick: bool = False) -> dict[str, Any]:
    from ..harness.problems import load_manifest

    manifest = load_manifest()
    rows: dict[str, Any] = {}
    for name in (QUICK_PROBLEMS if quick else PROBLEMS):
        path = str(manifest[name].path)
        row: dict[str, Any] = {m: _run(path, m) for m in UPPER + LOWER}

        def ok(m: str, kind: tuple[str, ...], row: dict[str, Any] = row) -> bool:
            r = row[m]
            return (r.get("certified") is True and r.get("kind") in kind
                    and math.isfinite(r.get("value", math.nan)))

        uppers = {m: row[m]["value"] for m in UPPER if ok(m, ("upper", "exact"))}
        lowers = {m: row[m]["value"] for m in LOWER if ok(m, ("lower", "exact"))}
        if uppers and lowers:
            best_up = min(uppers, key=uppers.get)
            best_low = max(lowers, key=lowers.get)
            row["best_upper"] = {"method": best_up, "value": uppers[best_up]}
            row["best_lower"] = {"method": best_low, "value": lowers[best_low]}
            row["ratio"] = uppers[best_up] / lowers[best_low]
            if "autolip" in uppers:
                row["autolip_ratio"] = uppers["autolip"] / lowers[best_low]
        rows[name] = row
    ratios = [r.get("ratio", math.inf) for r in rows.values()]
    return {"time_limit": TIME_LIMIT, "problems": rows,
            "goal_ratio_met": bool(all(r <= 1.5 for r in ratios))}
