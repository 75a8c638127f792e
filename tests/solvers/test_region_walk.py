"""Region walk: certified witnesses, exact values on small nets (against region enumeration),
moves that stay inside a domain, and its building blocks against direct computation."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lipopt_suite import Domain, Network, UnsupportedError, estimate
from lipopt_suite.core.lower import _space, pl_mlp, secant_ratios
from lipopt_suite.harness.nets import random_cnn, random_mlp
from lipopt_suite.solvers.region_walk import _affine, _Chebyshev, _neighbour_norms, _Walk
from lipopt_suite.solvers.regions import enumerate_regions, region_norms
from tests.core.test_lower import FAR, check_witness, far_net, manual_patterns

# regions' Jacobian norms and the walk's certified secants agree to float64 rounding plus
# the secant's proven evaluation-error margin (about 1e-12 relative on these nets)
EXACT_RTOL = 1e-8
# budgets small enough for a unit test, still enough to reach the exact value on these nets
CHEAP = {"samples": 500, "restarts": 4, "steps": 40}


@pytest.mark.parametrize("norm", ["2", "inf", "1"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_walk_reaches_the_exact_constant(norm, activation):
    net = random_mlp([3, 6, 5, 2], seed=2, bias_scale=1.0, activation=activation)
    exact = float(region_norms(enumerate_regions(net).regions, norm).max())
    b = estimate(net, "region-walk", norm=norm, **CHEAP)
    assert b.kind == "lower" and b.certified
    check_witness(net, b)
    assert b.value <= exact * (1 + EXACT_RTOL)
    assert b.value >= exact * (1 - EXACT_RTOL)
    assert b.details["moves"] > 0 and b.details["lps"] > 0


def test_walk_finds_the_far_region():
    net = far_net()
    b = estimate(net, "region-walk", multiscale=False, **CHEAP)  # start in the box only
    check_witness(net, b)
    assert b.value == pytest.approx(10.1, rel=EXACT_RTOL)
    assert b.details["sampled_value"] < 1.0  # the walk, not the sample, went out there
    assert b.details["witness"]["x"][0] > FAR


@pytest.mark.parametrize("seed", range(3))
def test_box_domain_matches_enumeration_and_stays_inside(seed):
    net = random_mlp([2, 8, 6, 2], seed=seed, bias_scale=1.0)
    box = Domain.box([0.3, -0.2], 0.5)
    exact = estimate(net, "regions", domain=box).value
    b = estimate(net, "region-walk", domain=box, **CHEAP)
    check_witness(net, b, box)
    assert b.value == pytest.approx(exact, rel=EXACT_RTOL)


def test_ball_domain_stays_inside():
    net = random_mlp([2, 8, 6, 2], seed=5, bias_scale=1.0)
    ball = Domain.ball([0.3, -0.2], 0.4)
    b = estimate(net, "region-walk", domain=ball, **CHEAP)
    check_witness(net, b, ball)
    # the regions meeting the ball are among those meeting its bounding box
    assert b.value <= estimate(net, "regions", domain=Domain.box([0.3, -0.2], 0.4)).value * (
        1 + EXACT_RTOL)
    assert b.value >= estimate(net, "random", domain=ball, samples=500).value


@pytest.mark.parametrize("seed", range(3))
def test_never_below_random(seed):
    net = random_mlp([4, 6, 6, 3], seed=seed, bias_scale=1.5)
    b = estimate(net, "region-walk", samples=300, seed=seed, restarts=2, steps=5)
    assert b.value >= estimate(net, "random", samples=300, seed=seed).value
    assert b.details["sampled_value"] == estimate(net, "random", samples=300, seed=seed).value


def test_time_limit_stops_early_with_a_certified_bound():
    net = random_mlp([2, 20, 20, 20, 1], seed=0)
    t0 = time.perf_counter()
    b = estimate(net, "region-walk", time_limit=0.05, restarts=50, steps=1000)
    assert time.perf_counter() - t0 < 10
    assert b.certified and b.details["stopped"] == "time_limit"
    check_witness(net, b)


def test_refuses_what_it_cannot_walk():
    with pytest.raises(UnsupportedError, match="relu"):
        estimate(random_mlp([2, 4, 1], activation="tanh"), "region-walk")
    with pytest.raises(UnsupportedError, match="MLP: .*unroll_units"):
        estimate(random_cnn((1, 6, 6), (3,)), "region-walk", unroll_units=10)
    with pytest.raises(UnsupportedError, match="anchored"):
        estimate(random_mlp([2, 4, 1]), "region-walk",
                 domain=Domain.ball([0.0, 0.0], 1.0, anchored=True))


def test_affine_network_is_its_own_bound():
    W = np.random.default_rng(2).standard_normal((3, 2))
    b = estimate(Network.from_mlp([W]), "region-walk", samples=5)
    assert b.value == pytest.approx(np.linalg.norm(W, 2), rel=1e-8)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_neighbour_norms_are_the_flipped_patterns_jacobians(activation):
    net = random_mlp([3, 5, 4, 2], seed=1, activation=activation)
    mlp = pl_mlp(net)
    pattern = mlp.patterns(np.array([[0.3, -0.1, 0.7]]))
    pattern = [p[0] for p in pattern]
    for norm in ("2", "inf", "1"):
        values = _neighbour_norms(mlp, _affine(mlp, pattern, norm), norm)
        flat = np.concatenate(pattern)
        sizes = np.cumsum([0] + [len(p) for p in pattern])
        for j in range(len(flat)):
            f = flat.copy()
            f[j] = not f[j]
            flipped = [f[sizes[k]:sizes[k + 1]] for k in range(len(pattern))]
            assert values[j] == pytest.approx(_affine(mlp, flipped, norm).value, rel=1e-12)


def test_chebyshev_ball_lies_in_its_region():
    net = random_mlp([2, 6, 6, 1], seed=3)
    mlp = pl_mlp(net)
    walk = _Walk(mlp, "2", _space(net, None, None, None), 1e-9, np.random.default_rng(0))
    assert isinstance(walk.lp, _Chebyshev)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 2)) * 2
    for x in X:
        pattern = [p[0] for p in mlp.patterns(x[None])]
        reg = walk.region(pattern)
        if reg is None:  # a sliver: no ball of radius 1e-9 fits
            continue
        d = rng.standard_normal((200, 2))
        d *= (0.99 * reg.radius * rng.random(200) / np.linalg.norm(d, axis=1))[:, None]
        pats = manual_patterns(net, reg.point + d)
        assert (pats == np.concatenate(pattern)).all()
        # and the secant across the ball along the top singular vector is ||J||
        v = np.linalg.svd(reg.J)[2][0]
        r = secant_ratios(net, (reg.point - 0.9 * reg.radius * v)[None],
                          (reg.point + 0.9 * reg.radius * v)[None], "2")[0]
        assert r == pytest.approx(reg.value, rel=1e-9)


@pytest.mark.parametrize("seed", range(0, 12, 2))
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_groupsort_nets_through_relu_comparators(seed, norm):
    from tests.test_sandwich import tiny_sort_net

    net = tiny_sort_net(seed)
    exact = estimate(net, "regions", norm=norm).value
    b = estimate(net, "region-walk", norm=norm, **CHEAP)
    assert b.certified and b.kind == "lower"
    assert exact * (1 - EXACT_RTOL) <= b.value <= exact * (1 + EXACT_RTOL)
    x, y = (np.asarray(b.details["witness"][k]) for k in ("x", "y"))
    ratio = np.linalg.norm((net(x[None]) - net(y[None])).ravel(), ord=float(norm)) / \
        np.linalg.norm(x - y, ord=float(norm))
    assert ratio >= b.value * (1 - 1e-12)
