"""AutoLip on computation graphs (Algorithm 2): analytic cases, brute force on residual ReLU
nets, the chain against the sequential product, and the paper's example f_w."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt_suite import Network, UnsupportedError, estimate
from lipopt_suite.harness.nets import random_cnn, random_mlp
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

ORDERS = {"2": 2, "inf": np.inf, "1": 1}
# certified spectral bounds sit at most this far (relative) above the exact norm: the
# Cholesky proof of core/linalg.py starts at slack 1e-9 (numerics/spectral.py
# CERT_SLACK_EXACT) and the recursion rounds upwards once per node
CERT_REL = 1e-8
# regions computes the exact constant from float64 SVDs (tests/core/sandwich.py)
EXACT_REL = 1e-9
# two float64 evaluations of the same product/recursion: a few ulps per factor
ROUNDING_REL = 1e-13


def linear_residual(W: np.ndarray) -> Network:
    """x -> x + W x as a graph."""
    return Network.from_graph([Node(Affine(W, None), (0,)), Node(Add(), (0, 1))],
                              (W.shape[1],))


@pytest.mark.parametrize("norm", ["2", "inf", "1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_residual_map_sits_between_its_norm_and_one_plus_the_norm(norm, seed):
    W = np.random.default_rng(seed).standard_normal((5, 5)) * 0.7
    b = estimate(linear_residual(W), "autolip", norm=norm)
    exact = np.linalg.norm(np.eye(5) + W, ord=ORDERS[norm])
    assert b.certified
    assert exact <= b.value
    assert b.value <= (1 + np.linalg.norm(W, ord=ORDERS[norm])) * (1 + CERT_REL)


def residual_relu(seed: int, n: int = 2, hidden: int = 4, blocks: int = 2
                  ) -> tuple[Network, Network]:
    """A residual ReLU net x -> U (y_B) + d with y_{k+1} = y_k + V_k relu(W_k y_k + c_k), as
    a graph, and the same function as a plain MLP (identity carried by relu(y) - relu(-y))."""
    rng = np.random.default_rng(seed)
    Ws = [rng.standard_normal((hidden, n)) for _ in range(blocks)]
    cs = [rng.standard_normal(hidden) * 0.5 for _ in range(blocks)]
    Vs = [rng.standard_normal((n, hidden)) / math.sqrt(hidden) for _ in range(blocks)]
    U, d = rng.standard_normal((2, n)), rng.standard_normal(2)
    nodes, last = [], 0
    for W, c, V in zip(Ws, cs, Vs):
        nodes += [Node(Affine(W, c), (last,)), Node(Activation("relu"), (len(nodes) + 1,)),
                  Node(Affine(V, None), (len(nodes) + 2,)), Node(Add(), (last, len(nodes) + 3))]
        last = len(nodes)
    nodes.append(Node(Affine(U, d), (last,)))
    graph = Network.from_graph(nodes, (n,))
    eye = np.eye(n)
    # hidden layer k holds (relu(y_k), relu(-y_k), relu(W_k y_k + c_k)); y_k = R_k h_k
    weights, biases = [], []
    R = None
    for W, c, V in zip(Ws, cs, Vs):
        pre = np.vstack([eye, -eye, W])
        weights.append(pre if R is None else pre @ R)
        biases.append(np.concatenate([np.zeros(2 * n), c]))
        R = np.hstack([eye, -eye, V])
    weights.append(U @ R)
    biases.append(d)
    return graph, Network.from_mlp(weights, biases)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_residual_relu_nets_lower_exact_autolip(seed):
    graph, mlp = residual_relu(seed)
    X = np.random.default_rng(seed).standard_normal((50, 2)) * 3
    np.testing.assert_allclose(graph(X), mlp(X), rtol=1e-12, atol=1e-12)
    exact = estimate(mlp, "regions").value
    upper = estimate(graph, "autolip")
    assert upper.certified and exact * (1 - EXACT_REL) <= upper.value
    for name, opts in (("gradient-ascent", {"restarts": 4, "steps": 60}),
                       ("random", {"samples": 300})):
        low = estimate(graph, name, **opts)
        assert low.certified and low.value <= exact * (1 + EXACT_REL)
        assert low.value > 0


@pytest.mark.parametrize("norm", ["2", "inf", "1"])
@pytest.mark.parametrize("net", [random_mlp([3, 7, 5, 2], seed=1), random_cnn(seed=2),
                                 random_mlp([4, 6, 3], seed=3, activation="sigmoid")],
                         ids=["mlp", "cnn", "sigmoid"])
def test_graph_autolip_equals_sequential_autolip_on_chains(net, norm):
    seq = estimate(net, "autolip", norm=norm)
    graph = estimate(net.as_graph(), "autolip", norm=norm)
    assert not net.is_graph and net.as_graph().is_graph
    assert graph.value == pytest.approx(seq.value, rel=ROUNDING_REL * len(net.layers))
    assert len(graph.details["nodes"]) == len(net.layers)


def f_w_net(w: float) -> Network:
    """f_w(x) = ln(1 + e^{x/2}) + |x/2 - w sin x| (Scaman & Virmaux 2018, Figure 1)."""
    return Network.from_graph([
        Node(Add((0.5,)), (0,)), Node(Activation("softplus"), (1,)),
        Node(Activation("sin"), (0,)), Node(Add((0.5, -w)), (0, 3)),
        Node(Activation("abs"), (4,)), Node(Add(), (2, 5))], (1,))


def test_the_papers_example_is_bounded_by_one_plus_w_and_above_its_slopes():
    w = 1.0
    net = f_w_net(w)
    x = np.linspace(-30, 30, 200_001)
    sig = 1 / (1 + np.exp(-x / 2))
    inner = x / 2 - w * np.sin(x)
    slope = np.abs(sig / 2 + np.sign(inner) * (0.5 - w * np.cos(x)))
    b = estimate(net, "autolip")
    assert b.certified and slope.max() <= b.value <= (1 + w) * (1 + ROUNDING_REL * 10)
    per_node = [d["lipschitz"] for d in b.details["nodes"]]
    assert per_node == pytest.approx([0.5, 0.5, 1.0, 0.5 + w, 0.5 + w, 1 + w])
    np.testing.assert_allclose(net(x[:5, None]).ravel(),
                               np.log1p(np.exp(x[:5] / 2)) + np.abs(inner[:5]), rtol=1e-12)
    low = estimate(net, "grid", radius=10.0)
    assert low.value <= b.value and low.value >= 0.9 * slope.max()


@pytest.mark.parametrize("norm, combine", [
    ("2", lambda a, b: math.hypot(a, b)), ("inf", max), ("1", lambda a, b: a + b)])
def test_concatenation_combines_its_inputs_in_the_norm(norm, combine):
    rng = np.random.default_rng(4)
    W1, W2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 4))
    net = Network.from_graph([Node(Affine(W1, None), (0,)), Node(Affine(W2, None), (0,)),
                              Node(Concat(0), (1, 2))], (4,))
    b = estimate(net, "autolip", norm=norm).value
    o = ORDERS[norm]
    exact = np.linalg.norm(np.vstack([W1, W2]), ord=o)
    assert exact <= b
    assert b <= combine(np.linalg.norm(W1, ord=o), np.linalg.norm(W2, ord=o)) * (1 + CERT_REL)


def test_batchnorm_groupsort_and_pooling_nodes_are_sound():
    rng = np.random.default_rng(5)
    conv = Conv2d(rng.standard_normal((4, 2, 3, 3)) / 3, rng.standard_normal(4), 1, 1)
    nodes = [Node(conv, (0,)), Node(BatchNorm(rng.uniform(0.5, 2, 4), rng.standard_normal(4)),
                                    (1,)),
             Node(GroupSort(2), (2,)), Node(MaxPool2d(2, 2), (3,)), Node(Flatten(), (4,)),
             Node(Affine(rng.standard_normal((3, 16)) / 4, None), (5,))]
    net = Network.from_graph(nodes, (2, 4, 4))
    for norm in ("2", "inf", "1"):
        up = estimate(net, "autolip", norm=norm)
        low = estimate(net, "gradient-ascent", norm=norm, restarts=2, steps=20)
        assert up.certified and 0 < low.value <= up.value
    factors = {d["op"]: d["factor"] for d in estimate(net, "autolip").details["nodes"]}
    assert factors["batchnorm"] == pytest.approx(float(np.abs(nodes[1].op.scale).max()))
    assert factors["groupsort"] == 1.0 and factors["maxpool2d"] == 1.0


def test_an_unknown_op_is_refused_by_name():
    class Swish:
        type_name = "swish"

    net = Network.from_graph([Node(Affine(np.eye(2), None), (0,)), Node(Swish(), (1,))], (2,))
    with pytest.raises(UnsupportedError, match="Swish"):
        estimate(net, "autolip")
    with pytest.raises(UnsupportedError, match="'gelu'"):
        estimate(Network.from_graph([Node(Activation("gelu"), (0,))], (2,)), "autolip")
