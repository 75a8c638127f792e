"""lipsdp-groupsort: certified, between the exact constant and AutoLip, and the same program
as LipSDP-Neuron on elementwise nets."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Network, UnsupportedError, estimate
from lipopt_suite.harness.lipnets import random_maxmin
from lipopt_suite.harness.nets import random_mlp

# regions computes the exact constant from float64 SVDs
EXACT_RTOL = 1e-9
# two interior-point solves of one SDP agree to about their tolerance (1e-8)
CROSS_RTOL = 1e-6


@pytest.mark.parametrize("sizes, seed", [([2, 4, 4, 1], 0), ([3, 6, 4, 2], 1),
                                         ([11, 12, 12, 1], 0)])
def test_between_exact_and_autolip_on_maxmin_nets(sizes, seed):
    net = random_maxmin(sizes, seed)
    b = estimate(net, "lipsdp-groupsort")
    assert b.certified and b.status == "ok"
    exact = estimate(net, "regions", max_input_dim=sizes[0]).value
    assert exact * (1 - EXACT_RTOL) <= b.value < estimate(net, "autolip").value


def test_larger_groups_are_sorting_networks():
    rng = np.random.default_rng(2)
    ws = [rng.standard_normal((6, 3)), rng.standard_normal((4, 6)), rng.standard_normal((1, 4))]
    net = Network.from_mlp(ws, None, "groupsort", group_size=[3, 4])
    b = estimate(net, "lipsdp-groupsort")
    assert b.details["stages"] == ["sort"] * 7  # 3 rounds for groups of 3, 4 for the 4
    assert b.certified
    assert estimate(net, "regions").value * (1 - EXACT_RTOL) <= b.value


@pytest.mark.parametrize("seed", range(2))
def test_same_program_as_lipsdp_neuron_on_relu_nets(seed):
    net = random_mlp([3, 6, 5, 2], seed=seed)
    a = estimate(net, "lipsdp-groupsort")
    b = estimate(net, "lipsdp-neuron", solver="clarabel")
    assert a.certified and b.certified
    assert a.value == pytest.approx(b.value, rel=CROSS_RTOL)


def test_l2_only_and_a_linear_net():
    net = random_maxmin([2, 4, 1], 0)
    with pytest.raises(UnsupportedError, match="norm inf"):
        estimate(net, "lipsdp-groupsort", norm="inf")
    W = np.random.default_rng(0).standard_normal((2, 3))
    b = estimate(Network.from_mlp([W]), "lipsdp-groupsort")
    assert b.certified and b.value == pytest.approx(np.linalg.norm(W, 2), rel=1e-8)
