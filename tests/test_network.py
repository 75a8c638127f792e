"""Network: construction, validation, torch conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipopt_suite import InputError, Network, UnsupportedError
from lipopt_suite.harness.nets import random_cnn, random_mlp
from lipopt_suite.network import Activation, Affine, Conv2d, Flatten, MaxPool2d


def manual_forward(net: Network, x: np.ndarray) -> np.ndarray:
    ws, bs, acts = net.mlp()
    h = x
    for k, (W, b) in enumerate(zip(ws, bs)):
        h = W @ h + b
        if k < len(acts):
            h = np.maximum(h, 0.0)
    return h


def test_mlp_forward_matches_manual():
    net = random_mlp([3, 5, 4, 2], seed=1)
    x = np.random.default_rng(0).standard_normal(3)
    np.testing.assert_allclose(net(x), manual_forward(net, x), rtol=1e-12)
    assert net.describe() == "mlp 3-5-4-2 relu"
    assert net.is_mlp and net.is_relu and net.input_dim == 3 and net.output_dim == 2


def test_slopes_of_activations():
    assert Activation("relu").slopes == (0.0, 1.0)
    assert Activation("leaky_relu", 0.1).slopes == (0.1, 1.0)
    assert Activation("sigmoid").slopes == (0.0, 0.25)
    assert Activation("tanh").lipschitz == 1.0


def test_cnn_shapes_and_torch_agree():
    net = random_cnn((1, 8, 8), (4, 6), seed=2)
    assert net.output_shape == (10,)
    assert not net.is_mlp
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    out = net.to_torch()(x)
    assert out.shape == (3, 10)
    np.testing.assert_allclose(net(x.numpy()), out.numpy(), rtol=1e-12)


def test_weights_are_read_only():
    net = random_mlp([2, 3, 1])
    with pytest.raises(ValueError):
        net.layers[0].W[0, 0] = 1.0


@pytest.mark.parametrize("bad, match", [
    (lambda: Network((), (2,)), "empty network"),
    (lambda: Network.from_mlp([np.ones((3, 2)), np.ones((1, 4))]), "columns"),
    (lambda: Network.from_mlp([np.array([[np.nan, 1.0]])]), "NaN or inf"),
    (lambda: Network.from_mlp([np.ones((2, 2))], [np.ones(3)]), "bias has shape"),
    (lambda: Network((Affine(np.ones((2, 4)), None),), (1, 2, 2)), "flattened"),
    (lambda: Network((Conv2d(np.ones((2, 3, 3, 3)), None),), (1, 5, 5)), "expects"),
    (lambda: Network((Flatten(), Activation("swish")), (2,)), "no affine"),
    (lambda: Network((Activation("swish"), Affine(np.ones((1, 2)), None)), (2,)), "swish"),
    (lambda: Network((MaxPool2d(4, 4), Flatten(), Affine(np.ones((1, 1)), None)), (1, 2, 2)),
     "larger than the input"),
])
def test_validate_rejects_bad_networks(bad, match):
    with pytest.raises(InputError, match=match):
        bad().validate()


def test_mlp_view_rejects_convolutions():
    with pytest.raises(UnsupportedError, match="not an MLP"):
        random_cnn().mlp()


def test_points_accept_rows_images_and_one_point_and_refuse_the_rest():
    cnn = random_cnn(seed=0)
    shape, n = cnn.input_shape, cnn.input_dim
    assert cnn.points(np.zeros((3, n))).shape == (3, n)
    assert cnn.points(np.zeros((3, *shape))).shape == (3, n)
    assert cnn.points(np.zeros(n)).shape == (1, n)
    with pytest.raises(InputError, match="columns"):
        cnn.points(np.zeros((3, n + 1)))
    with pytest.raises(InputError, match="NaN"):
        cnn.points(np.full((2, n), np.nan))


def test_repr_is_one_line_per_layer_and_never_the_weights():
    net = random_mlp([784, 100, 100, 10], seed=0)
    text = repr(net)
    lines = text.splitlines()
    assert len(lines) == 1 + len(net.layers)
    assert "Affine(784 -> 100)" in text and "Activation(relu)" in text
    assert len(text) < 500
    cnn = random_cnn()
    assert all(len(line) < 120 for line in repr(cnn).splitlines())
