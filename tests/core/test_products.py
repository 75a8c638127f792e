"""Product bounds: analytic cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt_suite import Network, estimate
from lipopt_suite.harness.nets import random_cnn, random_mlp


@pytest.mark.parametrize("norm, order", [("2", 2), ("inf", np.inf), ("1", 1)])
def test_single_linear_layer_autolip_is_the_operator_norm(norm, order):
    W = np.random.default_rng(0).standard_normal((4, 6))
    b = estimate(Network.from_mlp([W]), "autolip", norm=norm)
    exact = np.linalg.norm(W, ord=order)
    assert exact <= b.value <= exact * (1 + 1e-8)


def test_frobenius_dominates_autolip():
    for net in (random_mlp([3, 7, 5, 2], seed=1), random_cnn(seed=2)):
        assert estimate(net, "frobenius").value >= estimate(net, "autolip").value


def test_autolip_product_of_factors():
    net = random_mlp([3, 7, 5, 2], seed=1)
    b = estimate(net, "autolip")
    assert b.value == pytest.approx(np.prod(b.details["factors"]))
    ws, _, _ = net.mlp()
    assert b.value >= np.prod([np.linalg.norm(W, 2) for W in ws])


def test_products_round_up_and_never_underflow_to_zero():
    from lipopt_suite.core.products import rounded_up_product

    assert rounded_up_product([1e-200, 1e-200, 1e-200]) > 0.0
    factors = [1.1, 1.3, 0.7, 3.1]
    assert rounded_up_product(factors) >= math.prod(factors)
    assert rounded_up_product([]) == 1.0
    tiny = Network.from_mlp([np.full((2, 2), 1e-200), np.full((1, 2), 1e-200)])
    assert estimate(tiny, "autolip").value > 0.0
    assert estimate(tiny, "frobenius").value > 0.0
