"""Unrolling: the MLP computes exactly the function of the CNN (against torch's own
convolution and pooling modules) or of the graph (residual sums, concatenations, batch
norm), the max-pool gadget is max pooling, and the size limits refuse by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lipopt_suite import Network, UnsupportedError
from lipopt_suite.harness.nets import residual_mlp
from lipopt_suite.io import from_torch
from lipopt_suite.network import (
    Activation,
    Add,
    Affine,
    BatchNorm,
    Concat,
    Conv2d,
    Flatten,
    MaxPool2d,
)
from lipopt_suite.unroll import pool_windows, unroll


def seeded(module: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return module.double().eval()


def assert_same_function(module: nn.Module, input_shape: tuple[int, ...], seed: int = 0
                         ) -> Network:
    net = from_torch(module, input_shape)
    mlp = unroll(net).net
    assert mlp.is_mlp and mlp.input_shape == (int(np.prod(input_shape)),)
    X = np.random.default_rng(seed).standard_normal((64, *input_shape)) * 2
    with torch.no_grad():
        ref = module(torch.from_numpy(X)).numpy()
    out = mlp(X.reshape(len(X), -1))
    scale = max(1.0, float(np.abs(ref).max()))
    assert np.abs(out - ref).max() <= 1e-12 * scale
    return net


CASES = {
    "conv stride 2 pad 1": (lambda: nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(3 * 3 * 3, 2)), (2, 5, 5)),
    "conv 2x3 kernel, stride (2, 1), pad (0, 2)": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, (2, 3), stride=(2, 1), padding=(0, 2)), nn.Tanh(), nn.Flatten(),
        nn.Linear(2 * 3 * 8, 3)), (1, 6, 6)),
    "conv -> linear composed": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 4), nn.ReLU(),
        nn.Linear(4, 1)), (1, 4, 4)),
    "avgpool": (lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(12, 2)), (1, 4, 4)),
    "conv -> avgpool -> conv": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(2, 2, 2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8, 1)), (1, 6, 6)),
    "maxpool after relu": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(8, 2)), (1, 4, 4)),
    "maxpool before relu, overlapping, padded": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, 2), nn.MaxPool2d(3, stride=1, padding=1), nn.LeakyReLU(0.1),
        nn.Flatten(), nn.Linear(32, 2)), (1, 5, 5)),
    "maxpool then relu (swapped)": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, 2, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
        nn.Linear(8, 2)), (1, 4, 4)),
    "maxpool 3x3 stride 2 on the input": (lambda: nn.Sequential(
        nn.MaxPool2d(3, stride=2), nn.Flatten(), nn.Linear(8, 2), nn.Sigmoid(),
        nn.Linear(2, 1)), (2, 5, 5)),
    "two maxpools": (lambda: nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3,
                                                                             padding=1),
        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)), (1, 8, 8)),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_unrolled_map_equals_torch(case, seed):
    make, shape = CASES[case]
    assert_same_function(seeded(make(), seed), shape, seed)


def test_max_pool_gadget_is_max_pooling():
    rng = np.random.default_rng(3)
    for kernel, stride, padding in [(2, 2, 0), (3, 1, 1), (3, 2, 0), (4, 3, 2)]:
        layer = MaxPool2d(kernel, stride, padding)
        shape = (2, 6, 7)
        m = int(np.prod(layer.out_shape(shape)))
        net = Network((layer, Flatten(), Affine(np.eye(m), np.zeros(m))), shape)
        mlp = unroll(net).net
        X = rng.standard_normal((32, *shape))
        ref = nn.MaxPool2d(kernel, stride, padding)(torch.from_numpy(X)).flatten(1).numpy()
        # the same function; its float64 evaluation rounds b + (a - b) (a few ulps)
        np.testing.assert_allclose(mlp(X.reshape(32, -1)), ref, rtol=0, atol=1e-14)
        # a window of k entries takes ceil(log2 k) ReLU layers
        k = max(len(w) for w in pool_windows(layer, shape))
        assert len(mlp.activations) == int(np.ceil(np.log2(k)))


def test_non_negative_values_pass_with_one_unit():
    # relu then 2x2 max pooling: every pass-through is relu(x), one unit; signed values
    # (max pooling on the input) need relu(x) - relu(-x)
    out = Affine(np.ones((1, 1)), np.zeros(1))
    pos = Network((Activation("relu"), MaxPool2d(2, 2), Flatten(), out), (1, 2, 2))
    signed = Network((MaxPool2d(2, 2), Flatten(), out), (1, 2, 2))
    info_pos, info_signed = unroll(pos).info, unroll(signed).info
    assert info_pos["max_pool_units"] == 4 + 2
    assert info_signed["max_pool_units"] == 2 * 3 + 3


def test_max_pooling_then_relu_pools_non_negative_values():
    conv = Conv2d(np.ones((1, 1, 1, 1)), np.zeros(1))
    out = Affine(np.ones((1, 1)), np.zeros(1))
    pool_relu = Network((conv, MaxPool2d(2, 2), Activation("relu"), Flatten(), out),
                        (1, 2, 2))
    relu_pool = Network((conv, Activation("relu"), MaxPool2d(2, 2), Flatten(), out),
                        (1, 2, 2))
    assert unroll(pool_relu).info["sizes"] == unroll(relu_pool).info["sizes"] == [4, 4, 4, 2, 1]


def test_relu_cnn_unrolls_to_relu_mlp_and_memo():
    net = Network((Conv2d(np.ones((2, 1, 2, 2)), np.zeros(2)), Activation("relu"),
                   MaxPool2d(2, 1), Flatten(), Affine(np.ones((1, 8)), np.zeros(1))),
                  (1, 4, 4))
    u = unroll(net)
    assert u.net.is_relu and u.net.is_mlp
    assert unroll(net) is u
    assert u.info["hidden_units"] == sum(u.info["sizes"][1:-1])


def test_refusals_name_the_limit_and_the_layer():
    net = Network((Conv2d(np.ones((4, 1, 3, 3)), np.zeros(4), padding=1), Activation("relu"),
                   Flatten(), Affine(np.ones((1, 64)), np.zeros(1))), (1, 4, 4))
    with pytest.raises(UnsupportedError, match="hidden units .*limit 10: option unroll_units"):
        unroll(net, max_units=10)
    with pytest.raises(UnsupportedError, match="matrix entries .*option unroll_entries"):
        unroll(net, max_entries=100)
    assert unroll(net, max_units=64).info["hidden_units"] == 64
    pool3 = from_torch(nn.Sequential(nn.AvgPool2d(3), nn.Flatten()).double(), (1, 3, 3))
    with pytest.raises(UnsupportedError, match="average pooling over 9 entries"):
        unroll(pool3)


def graph_net(seed: int, act: str = "relu") -> Network:
    """conv -> relu -> batch norm -> conv, a residual sum (coefficients 1, 0.5), relu, a
    concatenation with an earlier value, max pooling, linear."""
    rng = np.random.default_rng(seed)
    nodes = [
        (Conv2d(rng.standard_normal((2, 1, 3, 3)), rng.standard_normal(2), 1, 1), (0,)),
        (Activation(act), (1,)),
        (BatchNorm(rng.standard_normal(2), rng.standard_normal(2)), (2,)),
        (Conv2d(rng.standard_normal((2, 2, 3, 3)), rng.standard_normal(2), 1, 1), (3,)),
        (Add((1.0, 0.5)), (2, 4)),
        (Activation("relu"), (5,)),
        (Concat(0), (6, 2)),
        (MaxPool2d(2, 2), (7,)),
        (Flatten(), (8,)),
        (Affine(rng.standard_normal((3, 16)), rng.standard_normal(3)), (9,)),
    ]
    return Network.from_graph(nodes, (1, 4, 4)).validate()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unrolled_graph_equals_its_forward(seed):
    for net in (graph_net(seed), residual_mlp(seed=seed)):
        mlp = unroll(net).net
        assert mlp.is_mlp and mlp.is_relu
        X = np.random.default_rng(seed).standard_normal((64, *net.input_shape)) * 2
        ref = net(X)
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(mlp(X.reshape(len(X), -1)) - ref).max() <= 1e-12 * scale
        assert unroll(net).info["pass_through_units"] > 0


def test_graph_values_cross_relu_layers_only():
    # a tanh layer whose output is carried through later ReLU layers unrolls ...
    net = graph_net(0, "tanh")
    mlp = unroll(net).net
    assert [a.name for a in mlp.activations][0] == "tanh"
    X = np.random.default_rng(0).standard_normal((16, *net.input_shape))
    np.testing.assert_allclose(mlp(X.reshape(16, -1)), net(X), rtol=1e-12, atol=1e-12)
    # ... but x + V tanh(W x) would need x to cross the tanh layer unchanged
    rng = np.random.default_rng(1)
    res = Network.from_graph([(Affine(rng.standard_normal((4, 2)), np.zeros(4)), (0,)),
                              (Activation("tanh"), (1,)),
                              (Affine(rng.standard_normal((2, 4)), np.zeros(2)), (2,)),
                              (Add((1.0, 1.0)), (0, 3))], (2,))
    with pytest.raises(UnsupportedError, match="only ReLU layers"):
        unroll(res)


@pytest.mark.parametrize("seed", range(12))
def test_groupsort_as_relu_comparators_is_the_same_function(seed):
    from tests.test_sandwich import tiny_sort_net

    net = tiny_sort_net(seed)
    kept = unroll(net).net
    assert kept.has_groupsort
    u = unroll(net, sorts="relu")
    assert u.net.is_relu and u.info["comparator_units"] > 0
    X = np.random.default_rng(seed).standard_normal((256, net.input_dim)) * 3
    ref = net(X)
    assert np.abs(u.net(X) - ref).max() <= 1e-12 * max(1.0, float(np.abs(ref).max()))
    with pytest.raises(UnsupportedError, match="sorts must be"):
        unroll(net, sorts="bubble")
