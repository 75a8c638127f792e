"""Spectral norms of dense matrices and linear maps: the autograd power method, the Cholesky
certificate, certified dense bounds, subspace iteration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lipopt_suite.numerics import spectral

from ..core.test_linalg import conv_matrix

# Acceptance tolerances of the foundation issue.
POWER_DENSE_RTOL = 1e-6
POWER_CONV_RTOL = 1e-4


@pytest.mark.parametrize("shape", [(40, 30), (7, 50), (1, 9)])
def test_power_method_matches_svd_on_dense(shape):
    W = np.random.default_rng(sum(shape)).standard_normal(shape)
    Wt = torch.as_tensor(W)
    res = spectral.power_method(lambda x: x @ Wt.T, (shape[1],), batch=4, tol=1e-14,
                              max_iter=20000)
    exact = np.linalg.svd(W, compute_uv=False)[0]
    assert abs(res.sigma - exact) <= POWER_DENSE_RTOL * exact
    assert res.sigma <= exact * (1 + 1e-12)  # a Rayleigh value never exceeds sigma_max



def test_power_method_warm_start_converges_at_once():
    W = np.random.default_rng(0).standard_normal((20, 20))
    _, _, vh = np.linalg.svd(W)
    res = spectral.power_method(lambda x: x @ torch.as_tensor(W).T, (20,),
                              x0=torch.as_tensor(vh[:1]), tol=1e-12)
    assert res.iterations <= 3



@pytest.mark.parametrize("stride, padding", [((1, 1), (1, 1)), ((2, 2), (1, 1)),
                                             ((2, 1), (0, 2))])
def test_power_method_on_convolution_matches_matrix_svd(stride, padding):
    rng = np.random.default_rng(5)
    K = rng.standard_normal((4, 3, 3, 3))
    shape = (3, 7, 6)
    exact = np.linalg.svd(conv_matrix(K, shape, stride, padding), compute_uv=False)[0]
    Kt = torch.as_tensor(K)
    res = spectral.power_method(lambda x: F.conv2d(x, Kt, stride=stride, padding=padding),
                              shape, batch=3, tol=1e-13, max_iter=20000)
    assert abs(res.sigma - exact) <= POWER_CONV_RTOL * exact



def test_certificate_accepts_above_and_rejects_below():
    W = np.random.default_rng(1).standard_normal((30, 12))
    s = np.linalg.svd(W, compute_uv=False)[0]
    assert spectral.certify_spectral_upper(W, s * (1 + 1e-7))
    assert not spectral.certify_spectral_upper(W, s * (1 - 1e-7))



def test_dense_bounds_bracket_sigma():
    for shape in [(5, 3), (60, 200)]:
        W = np.random.default_rng(shape[0]).standard_normal(shape)
        s = np.linalg.svd(W, compute_uv=False)[0]
        nb = spectral.dense_spectral_bounds(W)
        assert nb.certified and nb.lower <= s <= nb.upper <= s * (1 + 1e-8)



def test_top_singular_triplets():
    W = np.random.default_rng(8).standard_normal((15, 12))
    s = np.linalg.svd(W, compute_uv=False)
    sig, V, U = spectral.top_singular(lambda x: x @ torch.as_tensor(W).T, (12,), 3, iters=500,
                                    tol=1e-12)
    np.testing.assert_allclose(sig.numpy(), s[:3], rtol=1e-6)
    np.testing.assert_allclose((V @ V.T).numpy(), np.eye(3), atol=1e-8)
