"""The structured CVXOPT solve: the map, its adjoint and the Schur complement against the
dense coefficients, the optimum against SCS, and the deadline."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.numerics.lmi import network_data
from lipopt_suite.solvers import backends
from lipopt_suite.solvers.lipsdp import lmi_coefficients, prepared, solve_sdp
from lipopt_suite.solvers.lipsdp_cvxopt import LipSDPStructure, solve_structured

pytestmark = pytest.mark.skipif(not backends.cvxopt_installed(), reason="needs cvxopt")

# float64 sums of a few hundred products of O(1) numbers
ALGEBRA_REL = 1e-12
# SCS at eps 1e-7 and CVXOPT at reltol 1e-6 both land within ~1e-6 of the optimum.
SOLVER_REL = 1e-5


def _instance(activation: str):
    return network_data(random_mlp([3, 5, 4, 2], seed=1, activation=activation))


@pytest.mark.parametrize("variant", ["neuron", "layer"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_structure_matches_the_dense_coefficients(variant, activation):
    data = _instance(activation)
    A, f0 = lmi_coefficients(data, variant)
    Ad = A.toarray()
    N, n = data.dim, A.shape[1]
    st = LipSDPStructure(data, variant)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, n)
    np.testing.assert_allclose(st.apply(x[0], x[1:]).ravel(), Ad @ x, atol=ALGEBRA_REL)
    np.testing.assert_array_equal(st.F0.ravel(), f0)
    Z = rng.standard_normal((N, N))
    Z = Z + Z.T
    np.testing.assert_allclose(st.adjoint(Z), Ad.T @ Z.ravel(), atol=1e-11)
    # a scaling rti and the Schur complement of the scaled columns rti^T A_i rti
    rti = rng.standard_normal((N, N)) + N * np.eye(N)
    cols = [rti.T @ Ad[:, i].reshape(N, N) @ rti for i in range(n)]
    H = np.array([[np.sum(ci * cj) for cj in cols] for ci in cols])
    Qt = st.scaled_rows(rti)
    np.testing.assert_allclose(st.schur(Qt), H, rtol=1e-10, atol=1e-10 * np.abs(H).max())
    Y = rng.standard_normal((N, N))
    Y = Y + Y.T
    expected = np.array([np.sum(c * Y) for c in cols])
    np.testing.assert_allclose(st.scaled_adjoint(Qt, Y), expected, rtol=1e-10,
                               atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("variant", ["neuron", "layer"])
def test_structured_optimum_equals_scs(variant):
    data = network_data(random_mlp([2, 6, 6, 6, 2], seed=3))
    fast = solve_sdp(data, variant, "CVXOPT")
    scs = solve_sdp(data, variant, "SCS")
    assert fast.status == "optimal" and fast.certificate.certified
    assert scs.certificate.certified
    assert fast.certificate.value == pytest.approx(scs.certificate.value, rel=SOLVER_REL)
    # an interior-point iterate is certified at its own value, up to the tolerance
    assert fast.certificate.value <= math.sqrt(fast.rho) * (1 + SOLVER_REL)


def test_deadline_in_the_past_stops_at_once():
    _, _, scaled = prepared(network_data(random_mlp([2, 8, 8, 2], seed=0)))
    start = time.perf_counter()
    ans = solve_structured(scaled, "neuron", deadline=start - 1.0)
    assert ans.status == "timeout" and ans.x is None
    assert time.perf_counter() - start < 5.0
