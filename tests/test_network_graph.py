"""Networks held as computation graphs: validation, shapes, torch modules, the .npz graph
spec, and every method that needs a sequential network refusing them by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipopt_suite import InputError, Network, UnsupportedError, estimate, load, save
from lipopt_suite.network import (
    Activation,
    Add,
    Affine,
    BatchNorm,
    Concat,
    Conv2d,
    Flatten,
    GroupSort,
    MaxPool2d,
    Node,
)
from lipopt_suite.registry import methods


def small_graph(seed: int = 0) -> Network:
    """conv -> bn -> relu, a residual sum with the input, a max-pooled branch concatenated
    with a group-sorted one, a linear head."""
    rng = np.random.default_rng(seed)
    conv = Conv2d(rng.standard_normal((2, 2, 3, 3)) / 3, rng.standard_normal(2), 1, 1)
    return Network.from_graph([
        Node(conv, (0,)),                                              # 1
        Node(BatchNorm(rng.uniform(0.5, 2, 2), rng.standard_normal(2)), (1,)),
        Node(Activation("relu"), (2,)),                                # 3
        Node(Add((1.0, -0.5), 0.25), (0, 3)),                          # 4
        Node(MaxPool2d(2, 2), (4,)),                                   # 5
        Node(GroupSort(2), (4,)),                                      # 6
        Node(Flatten(), (5,)), Node(Flatten(), (6,)),                  # 7, 8
        Node(Concat(0), (7, 8)),                                       # 9
        Node(Affine(rng.standard_normal((3, 40)) / 6, rng.standard_normal(3)), (9,)),
    ], (2, 4, 4))


def manual(net: Network, x: torch.Tensor) -> torch.Tensor:
    """The graph evaluated op by op with torch functions, independently of to_torch."""
    import torch.nn.functional as F

    n = net.nodes
    h = F.conv2d(x, torch.tensor(n[0].op.weight), torch.tensor(n[0].op.bias), padding=1)
    h = h * torch.tensor(n[1].op.scale)[:, None, None] + torch.tensor(n[1].op.shift)[:, None,
                                                                                   None]
    y = x - 0.5 * torch.relu(h) + 0.25
    a = F.max_pool2d(y, 2).flatten(1)
    g = torch.sort(y.reshape(y.shape[0], 1, 2, 4, 4), dim=2).values.reshape(y.shape).flatten(1)
    z = torch.cat([a, g], 1)
    return z @ torch.tensor(n[9].op.W).T + torch.tensor(n[9].op.b)


def test_graph_shapes_torch_and_description():
    net = small_graph().validate()
    assert net.is_graph and not net.is_mlp and net.output_shape == (3,)
    assert net.shapes()[9] == (40,) and net.shapes()[5] == (2, 2, 2)
    x = torch.randn(4, 2, 4, 4, dtype=torch.float64)
    np.testing.assert_allclose(net(x.numpy()), manual(net, x).numpy(), rtol=1e-12, atol=1e-12)
    assert "10 nodes" in net.describe() and "concat" in net.describe()
    assert len(repr(net).splitlines()) == 11 and "<- (7, 8)" in repr(net)


@pytest.mark.parametrize("nodes, shape, match", [
    ([Node(Activation("relu"), (1,))], (2,), "not an earlier node"),
    ([Node(Affine(np.ones((2, 2)), None), (0,)), Node(Add(), (0, 1, 1))], (2,),
     "2 coefficients for 3 inputs"),
    ([Node(Affine(np.ones((3, 2)), None), (0,)), Node(Add(), (0, 1))], (2,),
     "different shapes"),
    ([Node(Affine(np.ones((3, 2)), None), (0,)), Node(Concat(1), (0, 1))], (2,), "axis 1"),
    ([Node(Activation("relu"), (0, 0))], (2,), "takes one input"),
    ([Node(BatchNorm(np.ones(3), None), (0,))], (2,), "3 scales"),
    ([Node(GroupSort(3), (0,))], (4,), "does not divide"),
    ([Node(Add((np.nan,)), (0,))], (2,), "finite"),
    ([Node(BatchNorm(np.array([1.0, np.inf]), None), (0,))], (2,), "NaN or inf"),
])
def test_bad_graphs_are_refused_naming_the_node(nodes, shape, match):
    with pytest.raises(InputError, match=match):
        Network.from_graph(nodes, shape).validate()


def test_graph_only_activations_are_refused_in_sequential_networks():
    net = Network((Affine(np.ones((2, 2)), None), Activation("sin"),
                   Affine(np.ones((1, 2)), None)), (2,))
    with pytest.raises(UnsupportedError, match="available in graph networks"):
        net.validate()
    with pytest.raises(InputError, match="either layers or graph nodes"):
        Network((Affine(np.ones((2, 2)), None),), (2,),
                (Node(Activation("relu"), (0,)),)).validate()


def test_every_sequential_method_refuses_a_graph_in_one_line():
    net = small_graph()
    X = np.random.default_rng(0).standard_normal((5, 32))
    sequential = [m for m in methods() if not m.graphs]
    assert {"frobenius", "seqlip", "seqlip-greedy", "local", "regions"} <= {
        m.name for m in sequential}
    for info in sequential:
        with pytest.raises(UnsupportedError, match=f"method {info.name} needs a sequential "
                           "network") as exc:
            estimate(net, info.name, norm=info.norms[0], X=X) if "X" in info.needs else \
                estimate(net, info.name, norm=info.norms[0])
        assert "\n" not in str(exc.value) and "autolip" in str(exc.value)
    with pytest.raises(UnsupportedError, match="not an MLP: a computation graph"):
        net.mlp()


def test_graph_methods_run_on_a_graph():
    net = small_graph()
    X = np.random.default_rng(1).standard_normal((20, 32))
    up = estimate(net, "autolip").value
    for name, opts in (("data", {"X": X}), ("random", {"samples": 100}),
                       ("annealing", {"maxfun": 100})):
        b = estimate(net, name, **opts)
        assert b.certified and 0 < b.value <= up


def test_graph_spec_round_trips_through_npz(tmp_path):
    net = small_graph(3)
    path = save(net, tmp_path / "g.npz", X=np.zeros((2, 32)))
    back = load(path)
    assert back.is_graph and [n.inputs for n in back.nodes] == [n.inputs for n in net.nodes]
    x = np.random.default_rng(2).standard_normal((3, 2, 4, 4))
    np.testing.assert_array_equal(back(x), net(x))
    assert estimate(back, "autolip").value == estimate(net, "autolip").value
    # a sequential network keeps its old format (no "inputs")
    seq = Network.from_mlp([np.ones((2, 2)), np.ones((1, 2))])
    assert not load(save(seq, tmp_path / "s.npz")).is_graph


def test_malformed_graph_specs_are_one_line_errors(tmp_path):
    import json

    for spec, match in (([{"type": "relu", "inputs": "x"}], "'inputs' must be"),
                        ([{"type": "softmax", "inputs": [0]}], "unsupported type 'softmax'"),
                        ([{"type": "relu", "inputs": [3]}], "not an earlier node")):
        p = tmp_path / "bad.npz"
        np.savez(p, W0=np.ones((2, 2)), layers=np.array(json.dumps(
            [{"type": "linear", "inputs": [0]}] + spec)), input_shape=np.array([2]))
        with pytest.raises(InputError, match=match) as exc:
            load(p)
        assert str(exc.value).startswith(str(p))
