"""A battery of seeded random ReLU MLPs: the best certified lower bound of the lower-bound
methods, with their default budgets, against the exact constant from region enumeration
(never against the methods themselves), in l2 and l_inf. It includes nets whose largest
linear region lies outside the classic search box."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from lipopt_suite import Network, estimate
from lipopt_suite.bench.lower import battery_net
from lipopt_suite.core.lower import search_box
from lipopt_suite.solvers.regions import enumerate_regions, region_norms


@functools.cache
def exact_values(net: Network) -> dict[str, float]:
    """The exact constant in l2 and l_inf, by enumerating every linear region."""
    rs = enumerate_regions(net)
    assert rs.complete and not rs.slivers
    return {norm: float(region_norms(rs.regions, norm).max()) for norm in ("2", "inf")}


def far_out(net: Network, norm: str = "2") -> bool:
    """Whether the largest region lies outside the classic search box (ground truth: the
    regions meeting the box, enumerated, fall short of the global maximum)."""
    lo, hi = search_box(net)
    inside = region_norms(enumerate_regions(net, lower=lo, upper=hi).regions, norm).max()
    return bool(inside < 0.99 * exact_values(net)[norm])


# The goals: the best certified lower bound reaches GOAL_RATIO x exact on GOAL_SHARE of the
# (net, norm) cases and FLOOR_RATIO x exact on all of them.
GOAL_RATIO, GOAL_SHARE, FLOOR_RATIO = 0.99, 0.99, 0.9
# A certified lower bound never exceeds the exact value beyond float64 rounding (the regions'
# SVD norms are exact to ~1e-15; secant witnesses carry their proven error margin).
SOUND_RTOL = 1e-9
METHODS = ("random", "gradient-ascent", "annealing", "region-walk")
NORMS = ("2", "inf")
# The default battery: the first seeds whose nets have at most SMALL_HIDDEN hidden units (a
# few hundred regions at most, so that enumeration takes well under a second each).
SMALL_HIDDEN = 12
DEFAULT_NETS = 12
# The slow battery: every net of the first SLOW_NETS seeds.
SLOW_NETS = 100
# Each battery must hold at least this share of nets whose largest region is far out.
FAR_SHARE = 0.2


def hidden_units(net: Network) -> int:
    ws, _, _ = net.mlp()
    return sum(W.shape[0] for W in ws[:-1])


def default_seeds() -> list[int]:
    seeds = [s for s in range(200) if hidden_units(battery_net(s)) <= SMALL_HIDDEN]
    return seeds[:DEFAULT_NETS]


def run_battery(seeds: list[int]) -> None:
    ratios, unsound, far = [], [], 0
    for seed in seeds:
        net = battery_net(seed)
        exact = exact_values(net)
        far += far_out(net)
        for norm in NORMS:
            best = 0.0
            for name in METHODS:
                b = estimate(net, name, norm=norm)
                assert b.kind == "lower" and b.certified
                if b.value > exact[norm] * (1 + SOUND_RTOL):
                    unsound.append((seed, norm, name, b.value, exact[norm]))
                best = max(best, b.value)
            ratios.append((best / exact[norm], seed, norm))
    assert not unsound, unsound
    assert far >= FAR_SHARE * len(seeds), f"only {far} of {len(seeds)} nets are far out"
    values = np.array([r for r, _, _ in ratios])
    worst = sorted(ratios)[:5]
    assert np.mean(values >= GOAL_RATIO) >= GOAL_SHARE, worst
    assert values.min() >= FLOOR_RATIO, worst


def test_default_battery():
    run_battery(default_seeds())


@pytest.mark.slow
def test_slow_battery():
    run_battery(list(range(SLOW_NETS)))
