"""Product bounds: analytic cases."""

from __future__ import annotations

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
