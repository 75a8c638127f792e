"""Branch-and-bound (`bab`) past the published frontier, beside the toolkit's own bounds.

* Nets the published branch-and-bound left open (ExLipBaB, Splittgerber, arXiv 2602.15499:
  a wine-quality 11-24-24-1 net at lower >= 1.7369 and a 13-20-16-8-3 net with 3 outputs at
  lower >= 10802.4, on its own nets, which we do not have): our own seeded nets of those
  shapes (wine 11-24-24-1 regression, the wine 13-20-16-8-3 classifier), and ReLU MLPs
  64-32-1 and 64-32-32-1 on the 8x8 digits (one output logit, of class 0); and MaxMin
  (GroupSort, groups of 2) nets of the two wine shapes, which ExLipBaB proves exactly on its
  own nets. Each gets LipSDP (Neuron; LipSDP-GroupSort on the MaxMin nets) and region-walk
  (the baseline: the toolkit's best certified upper and lower bounds), then `bab` for
  LONG_SECONDS; goals: exact (gap <= 1e-9) in <= 10 min, the digits nets exact or gap <= 1 %
  in <= 5 min, and bab's interval never wider than the baseline's.
* A fuzz: FUZZ_NETS seeded nets of fuzz_mlp (1-3 hidden layers, varied widths, biases,
  degenerate rows, ReLU or leaky ReLU), all three norms, global and on boxes, bab with a
  short time limit against region enumeration: no exception, no failed sub-solve, every
  interval holding the exact value.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

TITLE = ("bab beyond the published frontier: 11-24-24-1, 13-20-16-8-3 (ReLU and MaxMin), "
         "digits 64-32(-32)-1 beside LipSDP and region-walk; fuzz of seeded nets (no internal "
         "error)")
ROOT = Path(__file__).resolve().parents[2] / "problems"
LONG_SECONDS = 300.0
QUICK_SECONDS = 30.0
FUZZ_NETS = 240
FUZZ_SECONDS = 1.0
# containment checks: float64 norms of the same regions on both sides
CONTAIN_RTOL = 1e-8
PUBLISHED = {"wine_11_24_24_1": "ExLipBaB (own net): lower >= 1.7369, unfinished",
             "wine_13_20_16_8_3": "ExLipBaB (own 13-20-16-8-3 net, bike data): "
                                  "lower >= 10802.4, unfinished",
             "maxmin_wine_11_24_24_1": "ExLipBaB (own MaxMin net): exact",
             "maxmin_wine_13_20_16_8_3": "ExLipBaB (own MaxMin net, bike data): exact"}


def _nets() -> dict[str, Any]:
    from ..harness.tabular import TabularSpec, train_spec
    from ..harness.train import train_digits_mlp
    from ..io import load
    from ..network import Network

    out = {"wine_11_24_24_1": train_spec(TabularSpec("wine", tuple(range(11)), 11,
                                                     (11, 24, 24, 1), "mse", 300)).net,
           "wine_13_20_16_8_3": load(ROOT / "tabular" / "wine_13_20_16_8_3.npz"),
           "maxmin_wine_11_24_24_1": train_spec(TabularSpec(
               "wine", tuple(range(11)), 11, (11, 24, 24, 1), "mse", 300, group_size=2)).net,
           "maxmin_wine_13_20_16_8_3": train_spec(TabularSpec(
               "wine", tuple(range(13)), None, (13, 20, 16, 8, 3), "ce", 200,
               group_size=2)).net}
    for hidden in ((32,), (32, 32)):
        W, b, _ = train_digits_mlp((64, *hidden, 10)).net.mlp()
        name = "digits_" + "_".join(str(s) for s in (64, *hidden, 1))
        out[name] = Network.from_mlp(W[:-1] + [W[-1][:1]], b[:-1] + [b[-1][:1]])
    return out


def _timed(net: Any, method: str, **options: Any) -> tuple[Any, float]:
    from ..registry import estimate

    start = time.perf_counter()
    b = estimate(net, method, **options)
    return b, time.perf_counter() - start


def _fuzz(count: int) -> dict[str, Any]:
    from ..bound import Domain
    from ..harness.nets import fuzz_mlp
    from ..registry import estimate

    errors, failed, outside, exact, agree = [], 0, [], 0, 0
    start = time.perf_counter()
    for seed in range(count):
        net = fuzz_mlp(seed, max_input=5, max_width=10)
        rng = np.random.default_rng(seed)
        norm = ("2", "inf", "1")[seed % 3]
        domain = None if seed % 2 == 0 else Domain.box(rng.uniform(-1, 1, net.input_dim),
                                                       float(rng.uniform(0.1, 2.0)))
        try:
            b = estimate(net, "bab", norm=norm, domain=domain, time_limit=FUZZ_SECONDS)
        except Exception as exc:  # noqa: BLE001 - counted: an internal error is a defect
            errors.append(f"seed {seed}: {type(exc).__name__}: {exc}")
            continue
        failed += bool(b.details.get("failed_subsolves"))
        r = estimate(net, "regions", norm=norm, domain=domain)
        lo, up = b.details["lower"], b.details["upper"]
        if not (lo <= r.value * (1 + CONTAIN_RTOL) + 1e-12
                and r.value <= up * (1 + CONTAIN_RTOL) + 1e-12):
            outside.append(seed)
        if b.kind == "exact":
            exact += 1
            agree += abs(b.value - r.value) <= CONTAIN_RTOL * max(r.value, 1e-12)
    return {"nets": count, "seconds": time.perf_counter() - start, "exceptions": errors,
            "with_failed_subsolves": failed, "interval_misses_exact": outside,
            "exact": exact, "exact_agreeing_with_regions": agree,
            "goal_met": not errors and not outside and exact == agree}


def run(quick: bool = False) -> dict[str, Any]:
    from ..registry import estimate

    estimate(load_tiny(), "bab")  # imports and first calls out of the timings
    out: dict[str, Any] = {"fuzz": _fuzz(FUZZ_NETS // 4 if quick else FUZZ_NETS)}
    limit = QUICK_SECONDS if quick else LONG_SECONDS
    for name, net in _nets().items():
        upper_method = "lipsdp-groupsort" if net.has_groupsort else "lipsdp-neuron"
        sdp, t_sdp = _timed(net, upper_method)
        walk, t_walk = _timed(net, "region-walk")
        b, t = _timed(net, "bab", time_limit=limit)
        lo, up = b.details["lower"], b.details["upper"]
        row = {"sizes": [net.input_dim] + [W.shape[0] for W in net.mlp(groupsort=True)[0]],
               "activation": "maxmin" if net.has_groupsort else "relu",
               "bab_kind": b.kind, "bab_lower": lo, "bab_upper": up,
               "bab_gap": b.details["gap"], "bab_seconds": t, "bab_nodes": b.details["nodes"],
               "bab_lower_from": b.details["lower_from"],
               "bab_upper_from": b.details["upper_from"], "time_limit": limit,
               "lipsdp_method": upper_method,
               "lipsdp_neuron": sdp.value if sdp.certified else None,
               "lipsdp_neuron_seconds": t_sdp,
               "region_walk": walk.value if walk.certified else None,
               "region_walk_seconds": t_walk,
               "baseline_gap": (sdp.value / walk.value - 1 if sdp.certified and walk.value > 0
                                else None),
               "never_wider_than_baseline": bool(
                   (not sdp.certified or up <= sdp.value) and lo >= walk.value)}
        if name in PUBLISHED:
            row["published"] = PUBLISHED[name]
        out[name] = row
    return out


def load_tiny() -> Any:
    from ..io import load

    return load(ROOT / "exact" / "tiny0.npz")
