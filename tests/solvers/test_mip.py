"""mip against region enumeration (globally and over boxes), its witnesses, its bounds on
time-out, solver choice and the refusal of oversized programs."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from lipopt_suite import Domain, Network, UnsupportedError, estimate
from lipopt_suite.core.lower import batch_jacobians
from lipopt_suite.errors import SolverUnavailableError
from lipopt_suite.harness.nets import lipmip_width, random_mlp
from lipopt_suite.solvers.mip import (
    arrangement_radius,
    global_box,
)

# The solver proves optimality to a relative gap of 1e-8 and the reported value is the
# verified pattern's norm recomputed in float64; the acceptance criterion is 1e-6.
EXACT_RTOL = 1e-6
# Jacobian at an interior witness by autograd vs the pattern's product: float64 rounding.
GRADIENT_RTOL = 1e-12


def tiny_net(seed: int) -> Network:
    rng = np.random.default_rng(900 + seed)
    n = int(rng.integers(2, 4))
    hidden = [int(rng.integers(2, 7)) for _ in range(int(rng.integers(1, 3)))]
    return random_mlp([n] + hidden + [int(rng.integers(1, 4))], seed=seed)


def local_box(net: Network, seed: int) -> Domain:
    rng = np.random.default_rng(seed)
    n = net.input_dim
    return Domain.box(rng.standard_normal(n) * 0.5, 0.3 + rng.random(n))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("norm", ["inf", "1"])
def test_equals_region_enumeration(seed, norm):
    net = tiny_net(seed)
    for domain in (None, local_box(net, seed)):
        exact = estimate(net, "regions", norm=norm, domain=domain)
        got = estimate(net, "mip", norm=norm, domain=domain)
        one_hidden = len(net.mlp()[0]) == 2
        heuristic_box = domain is None and not one_hidden
        # over a box not proven to meet every region the value is only a lower bound
        assert got.kind == ("lower" if heuristic_box else "exact"), got.details
        assert got.certified
        assert got.value == pytest.approx(exact.value, rel=EXACT_RTOL, abs=1e-12)
        assert ("warning" in got.details) == heuristic_box
        if heuristic_box:
            assert got.details["exact_over_box"]


@pytest.mark.parametrize("seed", range(4))
def test_large_box_equals_region_enumeration_on_the_same_box(seed):
    net = random_mlp([2, 6, 5, 2], seed=seed)
    box = Domain.box(np.zeros(2), 500.0)
    exact = estimate(net, "regions", norm="inf", domain=box)
    got = estimate(net, "mip", norm="inf", domain=box)
    assert got.kind == "exact" and got.value == pytest.approx(exact.value, rel=EXACT_RTOL)


@pytest.mark.parametrize("norm, order", [("inf", np.inf), ("1", 1)])
def test_witness_lies_in_the_box_and_realises_the_value(norm, order):
    net = random_mlp([3, 8, 6, 2], seed=5)
    box = Domain.box([0.2, -0.1, 0.4], 0.8)
    b = estimate(net, "mip", norm=norm, domain=box)
    x = np.asarray(b.details["witness"]["x"])
    assert box.contains(x[None])[0]
    J = batch_jacobians(net, x[None]).numpy()[0]
    assert np.linalg.norm(J, ord=order) == pytest.approx(b.value, rel=GRADIENT_RTOL)


@pytest.mark.parametrize("norm, order", [("inf", np.inf), ("1", 1)])
def test_linear_network_is_its_operator_norm(norm, order):
    W = np.random.default_rng(2).standard_normal((3, 4))
    b = estimate(Network.from_mlp([W], [np.ones(3)]), "mip", norm=norm)
    assert b.kind == "exact" and b.value == pytest.approx(np.linalg.norm(W, ord=order))


def test_global_box_holds_every_first_layer_vertex():
    net = random_mlp([2, 7, 1], seed=3)
    (W, _), (b, _), _ = net.mlp()
    lo, hi, proven = global_box(net)
    assert proven
    for i in range(7):
        for j in range(i + 1, 7):
            v = np.linalg.solve(W[[i, j]], -b[[i, j]])
            assert np.all(np.abs(v) < hi)
    assert arrangement_radius(W, b) == pytest.approx(
        max(np.abs(np.linalg.solve(W[[i, j]], -b[[i, j]])).max()
            for i in range(7) for j in range(i + 1, 7)))


def test_time_limit_gives_a_proven_upper_bound():
    net = lipmip_width(2)
    box = Domain.box(np.zeros(2), 10.0)
    start = time.perf_counter()
    b = estimate(net, "mip", norm="inf", domain=box, time_limit=2.0)
    assert time.perf_counter() - start < 20
    assert b.kind == "upper" and b.status == "timeout" and b.certified
    X = (np.random.default_rng(0).random((3000, 2)) - 0.5) * 20
    J = batch_jacobians(net, X).numpy()
    sampled = np.linalg.norm(J, ord=np.inf, axis=(1, 2)).max()
    assert b.value >= sampled * (1 - EXACT_RTOL)
    assert b.value >= b.details.get("incumbent", 0.0)


def test_global_on_a_deep_net_under_a_time_limit_is_a_lower_bound():
    net = lipmip_width(2)
    b = estimate(net, "mip", norm="inf", time_limit=2.0)
    assert b.kind == "lower" and b.status == "timeout"
    assert b.value <= estimate(net, "autolip", norm="inf").value
    assert b.details["box_upper_bound"] >= b.value
    # the text output says why an exact method returned a lower bound
    from lipopt_suite.cli import format_bound

    assert "lower (box did not cover every region" in format_bound(b)


def test_784_inputs_refused_without_time_limit_and_bounded_with_one():
    net = random_mlp([784, 16, 10], seed=0)
    with pytest.raises(UnsupportedError, match="time_limit"):
        estimate(net, "mip", norm="inf")
    start = time.perf_counter()
    b = estimate(net, "mip", norm="1", time_limit=3.0)
    assert time.perf_counter() - start < 30
    assert b.kind in ("upper", "exact", "lower") and math.isfinite(b.value)


def test_forced_solvers():
    net = random_mlp([2, 5, 1], seed=1)
    with pytest.raises(SolverUnavailableError, match="HIGHS"):
        estimate(net, "mip", norm="inf", solver="NO_SUCH_SOLVER")
    with pytest.raises(SolverUnavailableError):
        estimate(net, "mip", norm="inf", solver="SCS")  # installed, but not a MIP solver
    highs = estimate(net, "mip", norm="inf", solver="highs")
    assert highs.details["solver"] == "HIGHS"
    from cvxpy.reductions.solvers.defines import INSTALLED_MI_SOLVERS

    if "SCIPY" in INSTALLED_MI_SOLVERS:
        other = estimate(net, "mip", norm="inf", solver="SCIPY")
        assert other.value == pytest.approx(highs.value, rel=EXACT_RTOL)


def test_refuses_l2_and_balls():
    net = random_mlp([2, 4, 1], seed=0)
    with pytest.raises(UnsupportedError, match="norm"):
        estimate(net, "mip", norm="2")
    with pytest.raises(UnsupportedError, match="ball"):
        estimate(net, "mip", norm="inf", domain=Domain.ball([0.0, 0.0], 1.0))
    with pytest.raises(UnsupportedError):
        estimate(random_mlp([2, 4, 1], activation="tanh"), "mip", norm="inf")


@pytest.mark.parametrize("left, width", [(0.0, 1e-9), (1000.0, 1e-6)])
def test_a_region_too_thin_to_resolve_is_not_called_exact(left, width):
    net = Network.from_mlp([np.array([[1.0], [1.0]]), np.array([[1.0, -1.0]])],
                           [np.array([-left, -left - width]), np.zeros(1)])
    b = estimate(net, "mip", norm="inf")
    assert b.kind != "exact" and b.status == "inaccurate"
    assert b.kind == "lower" or b.value >= 1.0  # an upper bound must cover the true 1
