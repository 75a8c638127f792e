"""GroupSort / MaxMin nets: exact l2 constants by region enumeration, and LipSDP with the
GroupSort constraints against AutoLip.

* exact: `regions` on the MaxMin nets 11-12-12-1 and 9-16-16-1 (random weights,
  harness.lipnets.random_maxmin, the suite's maxmin_random_11/_9). A MaxMin layer of n
  units brings n/2 comparator hyperplanes. Baseline measured in the same run: the same
  weights with ReLU activations (n hyperplanes per layer), stopped after BASELINE_LIMIT s.
  Goal: exact in <= 60 s each.
* lipsdp-groupsort: certified value and seconds on the same nets, with AutoLip's value (the
  baseline it must beat) and the ratio of each to the exact value.
Quick mode: the 11-12-12-1 net only, a 10 s baseline.
"""

from __future__ import annotations

import time
from typing import Any

TITLE = "GroupSort/MaxMin: exact l2 of 11-12-12-1 and 9-16-16-1 (goal <= 60 s), " \
        "lipsdp-groupsort vs autolip"
GOAL_SECONDS = 60.0
BASELINE_LIMIT = 60.0
SIZES = ([11, 12, 12, 1], [9, 16, 16, 1])


def run(quick: bool = False) -> dict[str, Any]:
    from ..harness.lipnets import random_maxmin
    from ..network import Network
    from ..registry import estimate

    out: dict[str, Any] = {"goal_seconds": GOAL_SECONDS}
    estimate(random_maxmin([2, 4, 1]), "regions")  # imports and first-call costs out of timings
    for sizes in SIZES[:1] if quick else SIZES:
        net = random_maxmin(sizes)
        limits = {"max_input_dim": sizes[0], "max_hidden_units": 64}
        start = time.perf_counter()
        exact = estimate(net, "regions", time_limit=600.0, **limits)
        seconds = time.perf_counter() - start
        ws, bs, _ = net.mlp(groupsort=True)
        relu = Network.from_mlp(ws, bs, "relu")
        start = time.perf_counter()
        base = estimate(relu, "regions", time_limit=10.0 if quick else BASELINE_LIMIT,
                        **limits)
        base_seconds = time.perf_counter() - start
        start = time.perf_counter()
        sdp = estimate(net, "lipsdp-groupsort")
        sdp_seconds = time.perf_counter() - start
        auto = estimate(net, "autolip")
        key = "maxmin_" + "-".join(map(str, sizes))
        out[key] = {
            "exact": {"value": exact.value, "kind": exact.kind, "seconds": seconds,
                      "regions": exact.details["regions"], "lps": exact.details["lps"],
                      "meets_goal": exact.kind == "exact" and seconds <= GOAL_SECONDS},
            "baseline_relu_same_weights": {"kind": base.kind, "status": base.status,
                                           "seconds": base_seconds,
                                           "regions": base.details["regions"]},
            "lipsdp_groupsort": {"value": sdp.value, "certified": sdp.certified,
                                 "seconds": sdp_seconds,
                                 "ratio_to_exact": sdp.value / exact.value},
            "autolip": {"value": auto.value, "ratio_to_exact": auto.value / exact.value},
            "lipsdp_below_autolip": bool(sdp.certified and sdp.value < auto.value),
        }
    return out
