"""LipSDP on the computation graph (lipsdp-graph) against LipSDP-Neuron on the exact
unrolling and AutoLip, measured in the same run.

Goal (2 CPU cores, l2, global): lipsdp-graph certified below lipsdp-neuron on the residual
and max-pooling nets, where the unrolling's pass-through units loosen LipSDP, and below
AutoLip on the scaman CNNs within seconds; its dense LMI
of side n0 + units is the cost, so the time limit `TIME_LIMIT` (s, per method, a child
process stopped then; methods with a time_limit option get `INNER` of it, the rest being
for the certificate) decides the digits nets.
"""

from __future__ import annotations

import time
from typing import Any

TITLE = "LipSDP on the computation graph vs LipSDP on the unrolled MLP vs AutoLip"
TIME_LIMIT = 120.0
INNER = 0.9
PROBLEMS = ("residual_mlp", "digits_cnn", "digits_resnet", "scaman_cnn4", "scaman_cnn5",
            "scaman_cnn7", "scaman_cnn10")
QUICK_PROBLEMS = ("residual_mlp",)
METHODS = ("lipsdp-graph", "lipsdp-neuron", "autolip")


def _bound(path: str, method: str, options: dict[str, Any]) -> Any:
    """One bound, in a child process (module level so that it can be sent there)."""
    from ..io import load
    from ..registry import estimate

    return estimate(load(path), method, **options)


def _run(path: str, method: str) -> dict[str, Any]:
    from ..limits import call_with_limit
    from ..registry import get, option_names

    options = ({"time_limit": INNER * TIME_LIMIT} if "time_limit" in option_names(get(method))
               else {})
    start = time.perf_counter()
    out = call_with_limit(_bound, path, method, options, time_limit=TIME_LIMIT)
    seconds = time.perf_counter() - start
    if out.status != "ok":
        return {"status": out.status, "seconds": seconds, "message": out.message}
    b = out.value
    row = {"value": b.value, "certified": b.certified, "status": b.status, "seconds": seconds}
    for key in ("lmi_dim", "solver", "raw_value"):
        if key in b.details:
            row[key] = b.details[key]
    return row


def run(quick: bool = False) -> dict[str, Any]:
    from ..harness.problems import load_manifest

    manifest = load_manifest()
    rows = {name: {m: _run(str(manifest[name].path), m) for m in METHODS}
            for name in (QUICK_PROBLEMS if quick else PROBLEMS)}
    return {"time_limit": TIME_LIMIT, "problems": rows}
