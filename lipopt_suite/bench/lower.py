"""Benchmark of the certified lower bounds: how close they come to the exact constant, and
what their default budgets cost.

Goals (on seeded random ReLU MLPs with input dimension 2-6, 1-3 hidden layers of width 3-8
and bias scales 0.3-2, against region enumeration): the best certified lower bound of the
lower-bound methods reaches 0.99 x exact on >= 99 % of the (net, norm) cases and 0.9 x
exact on all, in l2 and l_inf, with default budgets. Baseline measured in the same run: the
same methods confined to the classic search box (`multiscale=False`, which is exactly the
former `random`). Second part: value and seconds of each method with the default preset's
options on shipped problems, beside the same baseline.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

TITLE = "certified lower bounds at every scale vs exact (region enumeration); shipped problems"

METHODS = ("random", "gradient-ascent", "annealing", "region-walk")
NORMS = ("2", "inf")
GOAL_RATIO, GOAL_SHARE, FLOOR_RATIO = 0.99, 0.99, 0.9
# the default preset's options for the lower bounds (harness/problems.py, _QUICK_LOWER)
PRESET = {"annealing": {"maxfun": 1000}, "gradient-ascent": {"restarts": 8, "steps": 200}}
SHIPPED = ("scaman2018/mlp10.npz", "digits/digits_mlp.npz", "lipsdp/lipsdp_mnist.npz")


@cache
def battery_net(seed: int) -> Any:
    """The goal's distribution: input dimension 2-6, 1-3 hidden layers of width 3-8, 1-3
    outputs, weights N(0, 1/fan_in), biases N(0, s^2) with s log-uniform in [0.3, 2]."""
    from ..harness.nets import random_mlp

    rng = np.random.default_rng(90_000 + seed)
    n = int(rng.integers(2, 7))
    hidden = [int(rng.integers(3, 9)) for _ in range(int(rng.integers(1, 4)))]
    s = float(np.exp(rng.uniform(np.log(0.3), np.log(2.0))))
    return random_mlp([n] + hidden + [int(rng.integers(1, 4))], seed=seed, bias_scale=s)


def _timed(net: Any, name: str, norm: str, **options: Any) -> tuple[float, float]:
    from ..registry import estimate

    t0 = time.perf_counter()
    b = estimate(net, name, norm=norm, **options)
    return b.value, time.perf_counter() - t0


def _summary(ratios: list[float], seconds: list[float]) -> dict[str, Any]:
    r = np.array(ratios)
    return {"share_at_goal": float(np.mean(r >= GOAL_RATIO)), "min_ratio": float(r.min()),
            "mean_seconds": float(np.mean(seconds)), "max_seconds": float(np.max(seconds))}


def battery(seeds: list[int]) -> dict[str, Any]:
    from ..solvers.regions import enumerate_regions, region_norms

    runs: dict[str, dict[str, list[float]]] = {}
    best = {"new": [], "baseline": []}
    cases = []
    for seed in seeds:
        net = battery_net(seed)
        rs = enumerate_regions(net)
        for norm in NORMS:
            exact = float(region_norms(rs.regions, norm).max())
            top = {"new": 0.0, "baseline": 0.0}
            for name in METHODS:
                for tag, opts in (("new", {}), ("baseline", {"multiscale": False})):
                    value, sec = _timed(net, name, norm, **opts)
                    entry = runs.setdefault(f"{name}/{tag}", {"ratios": [], "seconds": []})
                    entry["ratios"].append(value / exact)
                    entry["seconds"].append(sec)
                    top[tag] = max(top[tag], value / exact)
            for tag in best:
                best[tag].append(top[tag])
            cases.append({"seed": seed, "net": net.describe(), "norm": norm, "exact": exact,
                          "best_ratio": top["new"], "baseline_best_ratio": top["baseline"]})
    out = {k: _summary(v["ratios"], v["seconds"]) for k, v in runs.items()}
    for tag, r in best.items():
        arr = np.array(r)
        out[f"best/{tag}"] = {"share_at_goal": float(np.mean(arr >= GOAL_RATIO)),
                              "min_ratio": float(arr.min())}
    out["meets_goal"] = bool(out["best/new"]["share_at_goal"] >= GOAL_SHARE
                             and out["best/new"]["min_ratio"] >= FLOOR_RATIO)
    out["cases"] = cases
    return out


def shipped(files: tuple[str, ...]) -> dict[str, Any]:
    from ..io import load_problem

    out: dict[str, Any] = {}
    for rel in files:
        path = Path("problems") / rel
        if not path.exists():
            continue
        net, extras = load_problem(path)
        X = {"X": extras["X"]} if "X" in extras else {}
        for norm in NORMS:
            for name in METHODS:
                opts = {**PRESET.get(name, {}), **X}
                value, sec = _timed(net, name, norm, **opts)
                base, base_sec = _timed(net, name, norm, multiscale=False, **opts)
                out[f"{rel}:{name}:{norm}"] = {"value": value, "seconds": sec,
                                               "baseline_value": base,
                                               "baseline_seconds": base_sec}
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """The battery (8 nets quick, 30 full) and the shipped problems (mlp10 only quick)."""
    return {"battery": battery(list(range(8 if quick else 30))),
            "shipped": shipped(SHIPPED[:1] if quick else SHIPPED)}
