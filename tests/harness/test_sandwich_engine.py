"""`sandwich`: the certified interval contains the exact constant (brute force: `regions`
enumerates every linear region), on every path out (closed, budget spent, Ctrl-C)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt_suite import Domain, InputError, UnsupportedError, estimate, from_torch
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.harness.sandwich import (
    CLOSE_RTOL,
    SKIP_GENERALISTS,
    applicable,
    candidates,
    generalist,
    sandwich,
)
from lipopt_suite.registry import COSTS, methods

# regions' exact value is exact up to float64 rounding of the region Jacobians' norms; the
# bounds compared with it are certified with their own rounding margins: 1e-9 relative
# covers both on nets this small.
RTOL = 1e-9


def exact(net, norm, domain=None):
    b = estimate(net, "regions", norm=norm, domain=domain)
    assert b.kind == "exact"
    return b.value


def assert_contains(s, value):
    lo, up = s.interval
    assert lo <= value * (1 + RTOL), (s.lower.method, lo, value)
    assert value <= up * (1 + RTOL), (s.upper.method, up, value)
    assert s.lower.certified and s.upper.certified
    assert s.lower.kind in ("lower", "exact") and s.upper.kind in ("upper", "exact")


def test_every_method_declares_a_cost_class():
    assert all(m.cost in COSTS for m in methods())
    order = [COSTS.index(m.cost) for m in candidates()]
    assert order == sorted(order)
    assert all(m.kind != "estimate" or m.cost == "cheap" for m in candidates())


@pytest.mark.parametrize("seed, norm, searches", [(0, "2", True), (1, "inf", False)])
def test_interval_contains_the_exact_value(seed, norm, searches):
    net = random_mlp([2, 6, 5, 1], seed=seed)
    # the second case leaves out the searches (seconds each) to keep the test short
    names = None if searches else [m.name for m in candidates() if m.cost != "search"]
    s = sandwich(net, budget=60, norm=norm, methods=names)
    assert_contains(s, exact(net, norm))
    assert s.status == "closed"  # a net this small closes well within the budget
    assert s.upper.value <= s.lower.value * (1 + CLOSE_RTOL)
    assert s.lower_methods and s.upper_methods
    # only certified bounds are ends; the estimates are listed among the bounds
    assert all(m in {b.method for b in s.bounds} for m in s.lower_methods + s.upper_methods)


def test_searches_in_the_helper_process_give_certified_lower_ends():
    net = random_mlp([2, 6, 5, 1], seed=5)
    # no exact method: the interval cannot close; the searches have no time limit of their
    # own and run in the helper process
    s = sandwich(net, budget=60, norm="2", methods=["autolip", "gradient-ascent", "grid"])
    assert s.status == "budget"
    searched = [b for b in s.bounds if b.method != "autolip"]
    assert all(b.status in ("ok", "timeout") for b in searched)  # never an error
    assert any(b.status == "ok" and b.certified and b.kind == "lower" for b in searched)
    assert set(s.lower_methods) <= {"gradient-ascent", "grid"}
    assert_contains(s, exact(net, "2"))


def test_local_interval_over_a_box_contains_the_exact_value():
    net = random_mlp([2, 6, 5, 1], seed=3)
    box = Domain.box(np.array([0.2, -0.1]), 0.3)
    s = sandwich(net, budget=30, norm="2", domain=box,
                 methods=["autolip", "lipsdp-neuron", "random", "region-walk", "bab"])
    assert_contains(s, exact(net, "2", box))
    assert s.to_dict()["domain"]["kind"] == "box"


def test_tiny_budget_still_gives_a_valid_interval():
    net = random_mlp([3, 8, 8, 2], seed=2)
    s = sandwich(net, budget=0.01, norm="2")
    assert s.status in ("budget", "closed")
    assert math.isfinite(s.upper.value) and s.lower.value > 0  # the cheap ends always run
    assert_contains(s, exact(net, "2"))
    assert not any(b.cost != "cheap" for b in candidates([b.method for b in s.bounds]))


def test_ctrl_c_returns_the_interval_so_far():
    net = random_mlp([2, 6, 5, 1], seed=4)
    seen = []

    def progress(bound, so_far):
        seen.append(bound.method)
        assert so_far.status == "running"
        if len(seen) == 3:
            raise KeyboardInterrupt

    s = sandwich(net, budget=60, norm="2", progress=progress)
    assert s.status == "interrupted"
    assert [b.method for b in s.bounds] == seen
    assert_contains(s, exact(net, "2"))


def test_a_torch_module_and_its_file_agree():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    net = from_torch(module.double())
    s = sandwich(net, budget=20, methods=["autolip", "random", "bab"])
    assert_contains(s, exact(net, "2"))
    assert s.exact is not None and s.closed


def test_the_order_follows_cost_then_specialists():
    net = random_mlp([2, 6, 5, 1], seed=0)
    chosen = applicable(net, "2")
    names = [m.name for m in chosen]
    assert "bab" in names and "lipsdp-neuron" in names and "mip" not in names  # mip: inf/1
    costs = [COSTS.index(m.cost) for m in chosen]
    assert costs == sorted(costs)
    for cls in SKIP_GENERALISTS:  # within such a class and kind, specialists come first
        group = [(m.kind, generalist(m, net)) for m in chosen if m.cost == cls]
        assert group == sorted(group, key=lambda t: ({"upper": 0, "exact": 1,
                                                      "lower": 2}[t[0]], t[1]))


def test_bad_input_is_refused():
    net = random_mlp([2, 4, 1], seed=0)
    with pytest.raises(InputError, match="budget"):
        sandwich(net, budget=0)
    with pytest.raises(InputError, match="budget"):
        sandwich(net, budget=float("nan"))
    with pytest.raises(InputError, match="unknown method"):
        sandwich(net, methods=["no-such-method"])
    with pytest.raises(InputError, match="list of method names"):
        sandwich(net, methods="autolip")
    with pytest.raises(InputError, match="Network"):
        sandwich(np.zeros((2, 2)))
    with pytest.raises(InputError, match="norm"):
        sandwich(net, norm="3")
    with pytest.raises(UnsupportedError, match="no registered method applies"):
        sandwich(net, norm="2", methods=["mip"])  # mip has no l2
    with pytest.raises(InputError, match="centre"):
        sandwich(net, domain=Domain.ball(np.zeros(3), 1.0))
