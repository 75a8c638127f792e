"""Branch-and-bound exact values: against region enumeration and the MIP (never against
bab itself), anytime intervals that contain the exact value, and refusals."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Domain, InputError, Network, UnsupportedError, estimate
from lipopt_suite.harness.nets import lipmip_width, random_mlp

from ..test_sandwich import tiny_net

# Both sides are float64 Jacobian norms of the same regions; bab closes its gap to 1e-9
# relative and reports a certified secant, so the two agree within a few times that.
EXACT_RTOL = 1e-8
SEEDS = range(0, 32, 3)
# the sandwich nets are tiny: bab finishes them in well under a second each
LIMIT = 60.0


def box_of(net: Network, seed: int) -> Domain:
    rng = np.random.default_rng(seed)
    return Domain.box(rng.uniform(-1, 1, net.input_dim), rng.uniform(0.3, 1.5))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("norm", ["2", "inf", "1"])
def test_equals_region_enumeration_global_and_on_a_box(seed: int, norm: str) -> None:
    net = tiny_net(seed)
    for domain in (None, box_of(net, seed)):
        exact = estimate(net, "regions", norm=norm, domain=domain)
        b = estimate(net, "bab", norm=norm, domain=domain, time_limit=LIMIT)
        assert exact.kind == "exact" and b.kind == "exact" and b.certified
        assert b.value == pytest.approx(exact.value, rel=EXACT_RTOL, abs=1e-12)
        assert b.details["lower"] <= exact.value * (1 + EXACT_RTOL)
        assert b.details["upper"] >= exact.value * (1 - EXACT_RTOL)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_dead_first_layer_unit_does_not_hide_the_regions_near_the_origin(seed: int) -> None:
    # weight decay leaves rows of norm 1e-17 whose kink lies 1e16 away; a global chart that
    # wide returned 0.70 for a constant of 1.05 here
    (W0, *Ws), bs, _ = random_mlp([4, 8, 8, 2], seed=seed).mlp()
    W0, b0 = W0.copy(), bs[0].copy()
    W0[0], b0[0] = 1e-17, 0.1
    net = Network.from_mlp([W0, *Ws], [b0, *bs[1:]], "relu")
    exact = estimate(net, "regions")
    b = estimate(net, "bab", time_limit=LIMIT)
    assert exact.kind == "exact" and b.kind == "exact"
    assert b.value == pytest.approx(exact.value, rel=EXACT_RTOL)


@pytest.mark.parametrize("norm", ["inf", "1"])
def test_equals_the_mip_on_the_lipmip_box(norm: str) -> None:
    net = lipmip_width(1)
    box = Domain.box(np.full(2, 0.5), 0.5)
    m = estimate(net, "mip", norm=norm, domain=box)
    b = estimate(net, "bab", norm=norm, domain=box, time_limit=LIMIT)
    assert m.kind == "exact" and b.kind == "exact"
    assert b.value == pytest.approx(m.value, rel=1e-6)  # the MIP's own exactness criterion


def test_a_ball_domain_lies_between_the_box_inside_and_the_box_outside() -> None:
    net = tiny_net(5)
    c = np.zeros(net.input_dim)
    r = 0.8
    ball = estimate(net, "bab", domain=Domain.ball(c, r), time_limit=LIMIT)
    inner = estimate(net, "regions", domain=Domain.box(c, r / np.sqrt(net.input_dim)))
    outer = estimate(net, "regions", domain=Domain.box(c, r))
    assert ball.kind == "exact"
    assert inner.value * (1 - EXACT_RTOL) <= ball.value <= outer.value * (1 + EXACT_RTOL)


@pytest.mark.parametrize("limits", [{"node_limit": 2}, {"time_limit": 1e-3}])
def test_a_stopped_run_returns_a_certified_interval_holding_the_exact_value(limits) -> None:
    net = random_mlp([3, 10, 10, 1], seed=7)
    exact = estimate(net, "regions").value
    b = estimate(net, "bab", **limits)
    assert b.kind == "upper" and b.certified and b.status == "timeout"
    low = b.details["lower"]
    assert low <= exact * (1 + EXACT_RTOL) and exact <= b.value * (1 + EXACT_RTOL)
    assert b.details["gap"] >= 0
    w = b.details["witness"]
    if low > 0:  # the lower end is a secant of its witness pair
        y = net(np.stack([w["x"], w["y"]]))
        ratio = np.linalg.norm(y[0] - y[1]) / np.linalg.norm(np.asarray(w["x"]) - w["y"])
        assert low <= ratio * (1 + 1e-9)


def test_leaky_relu_and_one_hidden_layer_and_a_linear_map() -> None:
    leaky = random_mlp([2, 6, 6, 1], seed=3, activation="leaky_relu")
    assert estimate(leaky, "bab").value == pytest.approx(
        estimate(leaky, "regions").value, rel=EXACT_RTOL)
    one = random_mlp([3, 9, 2], seed=1)
    assert estimate(one, "bab").value == pytest.approx(
        estimate(one, "hypercube").value, rel=EXACT_RTOL)
    W = np.random.default_rng(0).standard_normal((3, 4))
    lin = estimate(Network.from_mlp([W], [np.zeros(3)]), "bab")
    assert lin.kind == "exact" and lin.value == pytest.approx(np.linalg.norm(W, 2))


@pytest.mark.parametrize("left, width", [(0.0, 1e-9), (1000.0, 1e-6)])
def test_a_region_too_thin_to_resolve_is_never_called_exact_zero(left, width) -> None:
    net = Network.from_mlp([np.array([[1.0], [1.0]]), np.array([[1.0, -1.0]])],
                           [np.array([-left, -left - width]), np.zeros(1)])
    b = estimate(net, "bab", time_limit=LIMIT)
    # the true constant is 1 (slope 1 on the thin region)
    assert b.value >= 1.0 * (1 - EXACT_RTOL) or b.kind == "upper" and b.value >= 1.0


def test_bad_options_and_inputs_are_refused_in_one_line() -> None:
    net = tiny_net(0)
    for options, match in (({"node_limit": 0}, "node_limit"), ({"rtol": 2.0}, "rtol"),
                           ({"time_limt": 1}, "has no option")):
        with pytest.raises(InputError, match=match):
            estimate(net, "bab", **options)
    with pytest.raises(UnsupportedError):
        estimate(random_mlp([2, 4, 1], activation="tanh"), "bab")
    with pytest.raises(UnsupportedError):
        estimate(net, "bab", domain=Domain.ball(np.zeros(net.input_dim), 1.0, anchored=True))


def test_the_progress_bar_goes_to_stderr_only_when_asked(capfd) -> None:
    net = tiny_net(2)
    estimate(net, "bab")
    quiet = capfd.readouterr()
    assert quiet.out == "" and quiet.err == ""
    estimate(net, "bab", progress=True)
    loud = capfd.readouterr()
    assert loud.out == "" and "gap" in loud.err
