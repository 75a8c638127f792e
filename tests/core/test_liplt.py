"""LipLT: closed forms, linear networks, and the sandwich exact <= LipLT <= AutoLip."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Network, estimate
from lipopt_suite.errors import InputError

from .sandwich import check_between_ascent_and_autolip, check_between_exact_and_autolip

# certified spectral bounds exceed the SVD value by ~1e-9 relative (CERT_SLACK_EXACT)
NORM_REL = 1e-8


def test_two_layer_formula():
    # relu: m = r = 1/2, L = ||W1 W0|| / 2 + ||W1|| ||W0|| / 2
    rng = np.random.default_rng(0)
    W0, W1 = rng.standard_normal((6, 3)), rng.standard_normal((2, 6))
    expected = 0.5 * np.linalg.norm(W1 @ W0, 2) + 0.5 * np.linalg.norm(W1, 2) * np.linalg.norm(
        W0, 2)
    b = estimate(Network.from_mlp([W0, W1]), "liplt")
    assert b.certified
    assert expected <= b.value <= expected * (1 + NORM_REL)


def test_linear_activation_gives_the_product_norm():
    # leaky relu with slope 1 is the identity: m = 1, r = 0, so LipLT is exact
    rng = np.random.default_rng(1)
    Ws = [rng.standard_normal((4, 3)), rng.standard_normal((5, 4)), rng.standard_normal((2, 5))]
    net = Network.from_mlp(Ws, activation="leaky_relu", negative_slope=1.0)
    exact = np.linalg.norm(Ws[2] @ Ws[1] @ Ws[0], 2)
    b = estimate(net, "liplt")
    assert exact <= b.value <= exact * (1 + NORM_REL)


@pytest.mark.parametrize("seed", range(4))
def test_sandwich(seed):
    check_between_exact_and_autolip("liplt", [2, 8, 6, 5, 2], seed)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "leaky_relu"])
def test_other_activations(activation):
    check_between_ascent_and_autolip("liplt", activation, 2)


def test_single_layer_and_options():
    W = np.array([[2.0, 0.0], [0.0, 1.0]])
    b = estimate(Network.from_mlp([W]), "liplt")
    assert 2.0 <= b.value <= 2.0 * (1 + NORM_REL)
    with pytest.raises(InputError, match="no option"):
        estimate(Network.from_mlp([W]), "liplt", depth=3)
