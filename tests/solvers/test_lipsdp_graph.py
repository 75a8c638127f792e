"""lipsdp-graph: certified, at least the exact constant (regions on the exact unrolling) on
seeded tiny CNNs with max pooling, residual graphs and GroupSort MLPs; the LipSDP-Neuron
program on a plain MLP; tighter than LipSDP on the unrolling where that one pays for
pass-through units; one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Network, UnsupportedError, estimate
from lipopt_suite.harness.nets import random_mlp, residual_mlp
from lipopt_suite.network import (
    Activation,
    Add,
    Affine,
    AvgPool2d,
    BatchNorm,
    Concat,
    Conv2d,
    Flatten,
    GroupSort,
    MaxPool2d,
    Node,
)
from lipopt_suite.numerics.groupsort_lmi import (
    anchor_multipliers,
    certify_groupsort,
    graph_lmi_data,
    lmi_dim,
    repair_groupsort,
)
from lipopt_suite.solvers.lipsdp_groupsort import solve

# regions computes the exact constant from float64 SVDs (rounding ~1e-15)
EXACT_RTOL = 1e-9
# two interior-point solves of one SDP agree to about their tolerance (1e-8)
CROSS_RTOL = 1e-6
REGIONS = {"max_input_dim": 9, "max_hidden_units": 64}


def pool_cnn(seed: int) -> Network:
    """On a 1x3x3 input: conv 1x1 (1 -> 1) + ReLU + 2x2 max pooling with stride 1 (four
    overlapping windows), or conv 2x2 (1 -> 2) + ReLU + 2x2 max pooling (one window per
    channel); the pooling before or after the ReLU; then linear."""
    rng = np.random.default_rng(9000 + seed)
    if seed % 2:
        conv, pool, feats = (Conv2d(rng.standard_normal((2, 1, 2, 2)),
                                    0.5 * rng.standard_normal(2)), MaxPool2d(2, 2), 2)
    else:
        conv, pool, feats = (Conv2d(rng.standard_normal((1, 1, 1, 1)),
                                    0.5 * rng.standard_normal(1)), MaxPool2d(2, 1), 4)
    acts = (Activation("relu"), pool) if seed % 3 else (pool, Activation("relu"))
    return Network((conv, *acts, Flatten(),
                    Affine(rng.standard_normal((2, feats)) / 2, rng.standard_normal(2))),
                   (1, 3, 3))


def concat_graph(seed: int) -> Network:
    """On a 1x2x2 input: a 1x1 convolution through ReLU and batch norm, concatenated with a
    3x3 convolution (padding 1); a ReLU and a residual sum with the concatenation; 2x2
    average pooling; linear."""
    rng = np.random.default_rng(9500 + seed)
    nodes = [
        Node(Conv2d(rng.standard_normal((1, 1, 1, 1)), rng.standard_normal(1)), (0,)),
        Node(Activation("relu"), (1,)),
        Node(BatchNorm(rng.uniform(0.5, 1.5, 1), rng.standard_normal(1)), (2,)),
        Node(Conv2d(rng.standard_normal((1, 1, 3, 3)), None, 1, 1), (0,)),
        Node(Concat(0), (3, 4)),
        Node(Activation("relu"), (5,)),
        Node(Add((1.0, 0.5)), (6, 5)),
        Node(AvgPool2d(2, 2), (7,)),
        Node(Flatten(), (8,)),
        Node(Affine(rng.standard_normal((2, 2)), None), (9,)),
    ]
    return Network.from_graph(nodes, (1, 2, 2)).validate()


def sort_mlp(seed: int) -> Network:
    rng = np.random.default_rng(9900 + seed)
    sizes = [3, 6, 4, 2]
    ws = [rng.standard_normal((sizes[k + 1], sizes[k])) / np.sqrt(sizes[k]) for k in range(3)]
    return Network.from_mlp(ws, None, "groupsort", group_size=[3, 2])


def check_sound(net: Network) -> float:
    b = estimate(net, "lipsdp-graph")
    assert b.certified and b.status == "ok", b.details
    exact = estimate(net, "regions", **REGIONS).value
    assert b.value >= exact * (1 - EXACT_RTOL), (b.value, exact)
    return b.value


@pytest.mark.parametrize("seed", range(4))
def test_cnns_with_max_pooling(seed):
    net = pool_cnn(seed)
    value = check_sound(net)
    assert value <= estimate(net, "autolip").value * (1 + EXACT_RTOL)


@pytest.mark.parametrize("seed", range(3))
def test_residual_graphs_are_tighter_than_lipsdp_on_the_unrolling(seed):
    net = residual_mlp(n=2, hidden=3, blocks=2, outputs=2, seed=seed)
    value = check_sound(net)
    assert value <= estimate(net, "lipsdp-neuron").value * (1 + CROSS_RTOL)


@pytest.mark.parametrize("seed", range(2))
def test_concat_batchnorm_and_average_pooling(seed):
    net = concat_graph(seed)
    value = check_sound(net)
    assert value <= estimate(net, "lipsdp-neuron").value * (1 + CROSS_RTOL)
    assert estimate(net, "lipsdp-graph").details["lmi_dim"] == 4 + 4 + 8


@pytest.mark.parametrize("seed", range(2))
def test_groupsort_mlps_give_lipsdp_groupsort(seed):
    net = sort_mlp(seed)
    value = check_sound(net)
    assert value == pytest.approx(estimate(net, "lipsdp-groupsort").value, rel=CROSS_RTOL)


@pytest.mark.parametrize("seed", range(2))
def test_plain_mlp_is_lipsdp_neuron(seed):
    net = random_mlp([3, 6, 5, 2], seed=seed)
    a = estimate(net, "lipsdp-graph")
    b = estimate(net, "lipsdp-neuron", solver="clarabel")
    assert a.certified and b.certified
    assert a.value == pytest.approx(b.value, rel=CROSS_RTOL)


def test_channel_groupsort_on_images():
    # GroupSort over channel pairs at each position of a (4, 2, 2) feature map: no MLP
    # form, so checked against secants of the network itself
    rng = np.random.default_rng(3)
    net = Network((Conv2d(rng.standard_normal((4, 1, 2, 2)), rng.standard_normal(4)),
                   GroupSort(2), Flatten(), Affine(rng.standard_normal((2, 16)), None)),
                  (1, 3, 3))
    b = estimate(net, "lipsdp-graph")
    assert b.certified and b.details["stages"] == ["sort"]
    x = rng.standard_normal((4000, 9))
    d = rng.standard_normal((4000, 9)) * 1e-3
    fx, fy = net(x.reshape(-1, 1, 3, 3)), net((x + d).reshape(-1, 1, 3, 3))
    secant = np.max(np.linalg.norm(fx - fy, axis=1) / np.linalg.norm(d, axis=1))
    assert b.value >= secant
    assert b.value <= estimate(net, "autolip").value * (1 + EXACT_RTOL)


def test_max_pooling_units_have_no_pass_through():
    # relu (1x3x3 = 9) then 2x2 stride-1 max pooling: 4 windows of 4, 3 units each
    net = pool_cnn(2)
    data = graph_lmi_data(net)
    assert data.dim == lmi_dim(net) == 9 + 9 + 12
    assert [s.what for s in data.stages] == ["relu", "maxpool", "maxpool"]


def test_refusals_are_one_line(monkeypatch):
    net = pool_cnn(0)
    with pytest.raises(UnsupportedError, match=r"side 25 \(limit 20: option max_dim\)"):
        estimate(net, "lipsdp-graph", max_dim=20)
    with pytest.raises(UnsupportedError, match="norm inf"):
        estimate(net, "lipsdp-graph", norm="inf")

    class Mystery:  # an op Network itself would refuse: the builder names it too
        type_name = "mystery"

    odd = Network.from_graph([Node(Mystery(), (0,))], (2,))  # type: ignore[arg-type]
    monkeypatch.setattr(Network, "validate", lambda self: self)
    monkeypatch.setattr(Network, "shapes", lambda self: [(2,), (2,)])
    with pytest.raises(UnsupportedError, match=r"node 1 \(mystery\): not supported") as exc:
        graph_lmi_data(odd)
    assert "\n" not in str(exc.value)


def test_failing_multipliers_are_repaired_with_the_anchor():
    net = residual_mlp(n=2, hidden=3, blocks=2, outputs=2, seed=0)
    data = graph_lmi_data(net)
    anchor = anchor_multipliers(data)
    assert certify_groupsort(data, anchor).certified
    # the solver's multipliers with a unit of the last stage dropped: not certifiable
    _, _, T, _ = solve(data, "CLARABEL")
    T[-1][0] = 0.0
    assert not certify_groupsort(data, T).certified
    fixed = repair_groupsort(data, T)
    assert fixed is not None and fixed.certified and "anchor" in fixed.reason
    exact = estimate(net, "regions", **REGIONS).value
    assert exact * (1 - EXACT_RTOL) <= fixed.value
    assert exact * (1 - EXACT_RTOL) <= certify_groupsort(data, anchor).value


@pytest.mark.parametrize("make", [lambda: pool_cnn(1), lambda: concat_graph(0),
                                  lambda: sort_mlp(0), lambda: random_mlp([3, 5, 4, 2], seed=3)])
def test_anchor_alone_is_a_certified_bound_at_least_the_optimum(make):
    net = make()
    data = graph_lmi_data(net)
    cert = certify_groupsort(data, anchor_multipliers(data))
    assert cert.certified
    b = estimate(net, "lipsdp-graph")
    assert cert.value >= b.value * (1 - CROSS_RTOL)
    assert b.details["anchor_value"] == cert.value


def test_above_sdp_max_dim_the_anchor_alone():
    net = residual_mlp(n=2, hidden=3, blocks=2, outputs=2, seed=1)
    b = estimate(net, "lipsdp-graph", sdp_max_dim=5)
    assert b.certified and b.details["solver"] == "none (anchor multipliers)"
    assert "sdp_max_dim" in b.details["note"] and not b.details["tried"]
    assert b.value >= estimate(net, "lipsdp-graph").value * (1 - CROSS_RTOL)
    assert b.value >= estimate(net, "regions", **REGIONS).value * (1 - EXACT_RTOL)
