"""numerics/lmi.py: the LMI's blocks, the reduced and dense certificates, the layering."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from lipopt_suite import Network, estimate
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.numerics import lmi
from lipopt_suite.numerics.lmi import (
    LMIData,
    certify_multipliers,
    eclipse_point,
    hidden_lmi,
    negated_lmi,
    network_data,
)

# regions computes the exact constant from float64 SVDs of region Jacobians.
EXACT_REL = 1e-9
# Both certificates prove rho_min (1 + CERT_REL_MARGIN) at their first attempt; their
# float64 Schur complements of the same matrix agree far below this.
ROUTES_REL = 1e-8


def test_numerics_imports_neither_core_nor_solvers():
    code = ("import sys, lipopt_suite.numerics.lmi, lipopt_suite.numerics.blas;"
            "print(sorted(m for m in sys.modules if m.startswith(('lipopt_suite.core', "
            "'lipopt_suite.solvers', 'lipopt_suite.harness'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_hidden_block_is_part_of_the_full_matrix(activation):
    data = network_data(random_mlp([3, 5, 4, 2], seed=1, activation=activation))
    T = [np.random.default_rng(0).uniform(0.5, 2.0, n) for n in data.hidden]
    X, Xabs, _ = negated_lmi(data, T)
    H, Habs, _ = hidden_lmi(data, T)
    n0 = data.sizes[0]
    np.testing.assert_array_equal(X[n0:, n0:], H)
    np.testing.assert_array_equal(Xabs[n0:, n0:], Habs)
    assert np.all(Xabs >= np.abs(X))


@pytest.mark.parametrize("seed", range(3))
def test_reduced_and_dense_certificates_agree(seed):
    # relu: the input block is rho I and the certificate works on rho H - B B^T only
    data = network_data(random_mlp([6, 7, 5, 2], seed=seed))
    T, _ = eclipse_point(data)
    reduced = lmi._certify_reduced(data, T)
    dense = lmi._certify_dense(data, T)
    assert reduced.certified and dense.certified
    assert reduced.rho == pytest.approx(dense.rho, rel=ROUTES_REL)


def test_reduced_certificate_on_a_wide_input_is_sound():
    net = random_mlp([40, 3, 2], seed=5)
    data = network_data(net)
    T, _ = eclipse_point(data)
    cert = certify_multipliers(data, T)
    assert cert.certified
    # the LMI holds at the certified rho: smallest eigenvalue of -M(rho, T) is positive
    X, _, _ = negated_lmi(data, T)
    X[np.arange(40), np.arange(40)] += cert.rho
    assert np.linalg.eigvalsh(X)[0] > 0
    W0, W1 = data.weights
    assert cert.value <= np.linalg.norm(W0, 2) * np.linalg.norm(W1, 2) * (1 + 1e-9)


def test_reduced_certificate_refuses_too_small_multipliers():
    # f = relu on R^2: the hidden block 2t - 1 is indefinite for t < 1/2
    data = LMIData((np.eye(2), np.eye(2)), ((0.0, 1.0),))
    cert = lmi._certify_reduced(data, [np.full(2, 0.49)])
    assert not cert.certified and math.isinf(cert.value)


@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (1, 4)])
def test_single_layer_certificate(shape):
    W = np.random.default_rng(2).standard_normal(shape)
    cert = certify_multipliers(LMIData((W,), ()), [])
    sigma = np.linalg.norm(W, 2)
    assert cert.certified and sigma <= cert.value <= sigma * (1 + 1e-8)


def test_single_layer_certificate_of_tiny_and_huge_weights():
    for scale in (1e-200, 1e200):
        W = np.array([[3.0, 0.0], [0.0, 1.0]]) * scale
        cert = certify_multipliers(LMIData((W,), ()), [])
        assert cert.certified and 3 * scale <= cert.value <= 3 * scale * (1 + 1e-8)


@pytest.mark.parametrize("seed", range(4))
def test_eclipse_point_certifies_above_the_exact_constant(seed):
    net = random_mlp([2, 6, 5, 2], seed=seed)
    data = network_data(net)
    cert = certify_multipliers(data, eclipse_point(data)[0])
    assert cert.certified
    assert cert.value >= estimate(net, "regions").value * (1 - EXACT_REL)


def test_zero_first_layer_weights_are_not_certified_below_zero():
    net = Network.from_mlp([np.zeros((3, 2)), np.ones((1, 3))])
    cert = certify_multipliers(network_data(net), [np.ones(3)])
    assert cert.value >= 0.0
