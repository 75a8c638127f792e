"""Lower bounds: every value is backed by a witness pair whose secant reproduces it."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Domain, Network, UnsupportedError, estimate
from lipopt_suite.core.lower import secant_ratios
from lipopt_suite.harness.nets import random_cnn, random_mlp

LOWER = ["random", "gradient-ascent", "annealing", "grid"]
# Cheap settings: the witness property does not depend on search effort.
FAST = {"annealing": {"maxfun": 200}, "random": {"samples": 300},
        "gradient-ascent": {"restarts": 4, "steps": 60}, "grid": {"resolution": 40}}


def check_witness(net, b, domain=None):
    w = b.details["witness"]
    x, y = np.asarray(w["x"]), np.asarray(w["y"])
    ratio = secant_ratios(net, x[None], y[None], b.norm)[0]
    assert b.value <= ratio
    assert b.value >= ratio * (1 - 1e-6)
    if domain is not None:
        assert domain.contains(np.stack([x, y]), tol=1e-12).all()
        if domain.anchored:
            np.testing.assert_allclose(x, domain.center)


@pytest.mark.parametrize("name", LOWER)
@pytest.mark.parametrize("norm", ["2", "inf", "1"])
def test_witness_reproduces_value(name, norm):
    net = random_mlp([2, 6, 5, 2], seed=4)
    b = estimate(net, name, norm=norm, **FAST[name])
    assert b.kind == "lower" and b.certified and b.value > 0
    check_witness(net, b)


@pytest.mark.parametrize("domain", [Domain.ball([0.5, -0.5], 0.3), Domain.box([0.5, -0.5], 0.2),
                                    Domain.ball([0.5, -0.5], 0.3, anchored=True)])
def test_witnesses_stay_in_the_domain(domain):
    net = random_mlp([2, 6, 5, 2], seed=4)
    for name in LOWER:
        b = estimate(net, name, domain=domain, **FAST[name])
        assert b.domain is domain
        check_witness(net, b, domain)


def test_data_uses_the_points():
    net = random_mlp([3, 5, 1], seed=1)
    X = np.random.default_rng(0).standard_normal((50, 3))
    b = estimate(net, "data", X=X)
    check_witness(net, b)
    assert b.details["points"] == 50


def test_grid_refuses_high_dimension():
    with pytest.raises(UnsupportedError, match="dimension <= 3"):
        estimate(random_mlp([4, 3, 1]), "grid")


def test_linear_network_lower_bounds_are_exact():
    W = np.random.default_rng(2).standard_normal((3, 2))
    net = Network.from_mlp([W])
    for norm, order in [("2", 2), ("inf", np.inf), ("1", 1)]:
        exact = np.linalg.norm(W, ord=order)
        b = estimate(net, "random", norm=norm, samples=5)
        assert b.value == pytest.approx(exact, rel=1e-8)


def test_lower_bounds_on_a_cnn():
    net = random_cnn((1, 6, 6), (3,), seed=3)
    b = estimate(net, "random", samples=50)
    check_witness(net, b)
    b = estimate(net, "gradient-ascent", restarts=2, steps=30)
    check_witness(net, b)


def test_clever_is_an_estimate():
    net = random_mlp([2, 6, 1], seed=0)
    b = estimate(net, "clever", domain=Domain.ball([0.0, 0.0], 1.0), batches=10, batch_size=16)
    assert b.kind == "estimate" and not b.certified and b.value > 0
