"""Operator norms: power method, certified upper bounds, convolutions without matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lipopt_suite.core import linalg
from lipopt_suite.network import Affine, AvgPool2d, Conv2d, MaxPool2d


def conv_matrix(weight: np.ndarray, shape: tuple[int, int, int], stride, padding) -> np.ndarray:
    n = int(np.prod(shape))
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    out = F.conv2d(eye, torch.as_tensor(weight), stride=stride, padding=padding)
    return out.reshape(n, -1).T.numpy()


@pytest.mark.parametrize("stride, padding, shape", [((1, 1), (1, 1), (3, 9, 8)),
                                                    ((2, 2), (1, 1), (2, 9, 9)),
                                                    ((2, 1), (0, 2), (3, 7, 6)),
                                                    ((3, 3), (0, 0), (1, 10, 10))])
def test_fourier_bound_is_above_matrix_norm(stride, padding, shape):
    K = np.random.default_rng(7).standard_normal((5, shape[0], 3, 3))
    exact = np.linalg.svd(conv_matrix(K, shape, stride, padding), compute_uv=False)[0]
    upper, info = linalg.conv_fourier_upper(K, shape, stride, padding)
    assert upper >= exact
    # and the power method warm-started from the top frequency gives a lower bound
    nb = linalg.conv_spectral_bounds(Conv2d(K, None, stride, padding), shape)
    assert nb.lower <= exact * (1 + 1e-12) <= nb.upper * (1 + 1e-12)


def test_fourier_path_for_a_large_image():
    """Above the matrix-building size the bounds come from the DFT and the power method;
    for a 32x32 image they are within 2% of each other."""
    K = np.random.default_rng(9).standard_normal((4, 3, 3, 3))
    nb = linalg.conv_spectral_bounds(Conv2d(K, None, 1, 1), (3, 32, 32))
    assert nb.how == "fourier+power"
    assert nb.lower <= nb.upper <= nb.lower * 1.02


@pytest.mark.parametrize("norm", ["1", "inf"])
def test_conv_abs_norms_are_exact(norm):
    K = np.random.default_rng(2).standard_normal((3, 2, 3, 3))
    shape = (2, 6, 5)
    for stride, padding in [((1, 1), (1, 1)), ((2, 2), (0, 1))]:
        M = conv_matrix(K, shape, stride, padding)
        exact = np.abs(M).sum(axis=1 if norm == "inf" else 0).max()
        nb = linalg.layer_norm_bounds(Conv2d(K, None, stride, padding), shape, norm)
        assert nb.lower == pytest.approx(exact, rel=1e-12) and nb.upper >= exact


def test_frobenius_of_convolution_and_pooling():
    K = np.random.default_rng(3).standard_normal((3, 2, 3, 3))
    shape = (2, 6, 5)
    M = conv_matrix(K, shape, (2, 1), (1, 0))
    assert linalg.frobenius_norm(Conv2d(K, None, (2, 1), (1, 0)), shape) == pytest.approx(
        np.linalg.norm(M), rel=1e-12)
    pool = AvgPool2d(3, 2)
    eye = torch.eye(2 * 49, dtype=torch.float64).reshape(-1, 2, 7, 7)
    P = F.avg_pool2d(eye, 3, 2).reshape(98, -1).T.numpy()
    assert linalg.frobenius_norm(pool, (2, 7, 7)) == pytest.approx(np.linalg.norm(P), rel=1e-12)
    nb = linalg.layer_norm_bounds(pool, (2, 7, 7), "2")
    assert nb.lower <= np.linalg.svd(P, compute_uv=False)[0] * (1 + 1e-12) <= nb.upper


def test_maxpool_overlap_constant():
    assert MaxPool2d(3, 2).overlap == 4
    nb = linalg.layer_norm_bounds(MaxPool2d(3, 1), (1, 5, 5), "2")
    assert nb.upper == pytest.approx(3.0)
    # a random search of the l2 ratio never exceeds it
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((2000, 1, 5, 5)))
    y = x + 1e-3 * torch.as_tensor(rng.standard_normal((2000, 1, 5, 5)))
    ratio = (F.max_pool2d(x, 3, 1) - F.max_pool2d(y, 3, 1)).flatten(1).norm(dim=1) / (
        x - y).flatten(1).norm(dim=1)
    assert float(ratio.max()) <= nb.upper


def test_affine_layer_norms():
    W = np.random.default_rng(4).standard_normal((6, 4))
    layer = Affine(W, None)
    for norm, exact in [("inf", np.abs(W).sum(1).max()), ("1", np.abs(W).sum(0).max()),
                        ("2", np.linalg.svd(W, compute_uv=False)[0])]:
        nb = linalg.layer_norm_bounds(layer, (4,), norm)
        assert nb.lower <= exact * (1 + 1e-12) and exact <= nb.upper <= exact * (1 + 1e-8)


def test_batched_max_sigma_brackets_the_maximum():
    gen = torch.Generator().manual_seed(0)
    B = torch.randn((500, 6, 4), generator=gen, dtype=torch.complex128)
    exact = float(torch.linalg.matrix_norm(B, ord=2).max())
    upper, lower, arg = linalg.batched_max_sigma(B)
    assert lower <= exact * (1 + 1e-12) <= upper * (1 + 1e-12)
    assert math.isclose(float(torch.linalg.matrix_norm(B[arg], ord=2)), lower, rel_tol=1e-12)


