"""ECLipsE-Fast: analytic cases, ordering against LipSDP-Layer, AutoLip and exact values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lipopt_suite import Network, estimate
from lipopt_suite.core.eclipse import eclipse_point
from lipopt_suite.errors import UnsupportedError
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.io import load
from lipopt_suite.numerics.lmi import certify_multipliers, network_data

from .sandwich import check_between_ascent_and_autolip, check_between_exact_and_autolip

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "lipsdp_random.npz"
# LipSDP-Layer on the fixture, as printed in the LipSDP README (3 decimals).
PUBLISHED_LAYER = 39.839
# certificate margins (CERT_REL_MARGIN, FINAL_SLACK) are far below this
CERT_REL = 1e-6


def test_identity_relu_is_exact():
    # f = relu: X_1 = I, c = 1, so the bound is 1 (the true constant)
    b = estimate(Network.from_mlp([np.eye(3), np.eye(3)]), "eclipse-fast")
    assert b.certified and 1.0 <= b.value <= 1.0 + CERT_REL


def test_fixture_between_layer_sdp_and_autolip():
    net = load(FIXTURE)
    b = estimate(net, "eclipse-fast")
    assert b.certified
    assert PUBLISHED_LAYER - 1e-3 <= b.value <= estimate(net, "autolip").value


def test_two_layer_closed_form():
    # one hidden relu layer: lambda = 1/||W0||^2, X_1 = 2 lambda I - lambda^2 W0 W0^T,
    # L^2 = lambda_max(W1 X_1^{-1} W1^T)
    rng = np.random.default_rng(3)
    W0, W1 = rng.standard_normal((5, 3)), rng.standard_normal((2, 5))
    lam = 1 / np.linalg.norm(W0, 2) ** 2
    X1 = 2 * lam * np.eye(5) - lam ** 2 * W0 @ W0.T
    expected = np.sqrt(np.linalg.eigvalsh(W1 @ np.linalg.solve(X1, W1.T))[-1])
    b = estimate(Network.from_mlp([W0, W1]), "eclipse-fast")
    assert b.certified
    # the certificate re-optimises rho for these multipliers, so it may land a hair below
    assert b.value == pytest.approx(expected, rel=CERT_REL)
    assert b.value >= estimate(Network.from_mlp([W0, W1]), "regions").value


@pytest.mark.parametrize("seed", range(4))
def test_sandwich(seed):
    check_between_exact_and_autolip("eclipse-fast", [2, 7, 6, 5, 2], seed)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "leaky_relu"])
def test_other_activations(activation):
    check_between_ascent_and_autolip("eclipse-fast", activation, 1)


def test_multipliers_are_a_feasible_lipsdp_layer_point():
    data = network_data(random_mlp([2, 6, 6, 1], seed=2))
    T, c = eclipse_point(data)
    assert all(np.all(t == t[0]) for t in T)  # one multiplier per layer
    cert = certify_multipliers(data, T)
    assert cert.certified and cert.rho <= c * (1 + CERT_REL)


def test_deep_net_is_certified():
    # the power-of-two rescaling keeps the certificate working through many layers
    net = random_mlp([2] + [20] * 12 + [2], seed=0)
    b = estimate(net, "eclipse-fast")
    assert b.certified and b.value <= estimate(net, "autolip").value


def test_zero_layer_and_single_layer():
    assert estimate(Network.from_mlp([np.zeros((2, 2)), np.eye(2)]), "eclipse-fast").value == 0
    W = np.array([[3.0, 0.0], [0.0, 1.0]])
    b = estimate(Network.from_mlp([W]), "eclipse-fast")
    assert 3.0 <= b.value <= 3.0 * (1 + CERT_REL)


def test_negative_leaky_slope_is_refused():
    net = random_mlp([2, 4, 1], seed=0, activation="leaky_relu")
    bad = Network(tuple(
        type(layer)(layer.name, -0.5) if hasattr(layer, "negative_slope") else layer
        for layer in net.layers), net.input_shape)
    with pytest.raises(UnsupportedError, match="a b >= 0"):
        estimate(bad, "eclipse-fast")
