"""The first-order eigenvalue path: its value against the exact constant on the sandwich
nets, against the SDP optimum and its ECLipsE-Fast start; its time limit, device, progress."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lipopt_suite import estimate
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.numerics.lmi import certify_multipliers, eclipse_point, network_data
from lipopt_suite.solvers.lipsdp import prepared
from lipopt_suite.solvers.lipsdp_eig import SchurValue, solve_first_order

from ..test_sandwich import tiny_net

# regions computes the exact constant from float64 SVDs of region Jacobians.
EXACT_REL = 1e-9
# Certified SDP values of two solvers differ by their tolerances (~1e-6 relative).
SDP_REL = 1e-5
# The float64 Schur value and the certificate's rho_min are the same quantity computed by
# two routes (torch block recursion, numpy dense Cholesky).
ROUTES_REL = 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_never_below_the_exact_constant_on_the_sandwich_nets(seed):
    net = tiny_net(seed)
    exact = estimate(net, "regions").value
    start = estimate(net, "eclipse-fast").value
    for variant in ("neuron", "layer"):
        b = estimate(net, f"lipsdp-{variant}", solver="eig")
        assert b.certified and b.details["solver"] == "EIG"
        assert b.value >= exact * (1 - EXACT_REL)
        # monotone from the ECLipsE-Fast start, and never below the SDP optimum
        assert b.value <= start * (1 + EXACT_REL)
        sdp = estimate(net, f"lipsdp-{variant}", solver="cvxopt").value
        assert b.value >= sdp * (1 - SDP_REL)


def test_schur_value_is_the_certificates_rho():
    data = network_data(random_mlp([3, 6, 5, 2], seed=2))
    _, _, scaled = prepared(data)
    T, _ = eclipse_point(scaled)
    f = SchurValue(scaled)
    rho = float(f([torch.as_tensor(t)[None, :] for t in T])[0])
    assert rho == pytest.approx(certify_multipliers(scaled, T).rho_schur, rel=ROUTES_REL)
    # multipliers that leave the hidden block indefinite have no finite value
    bad = [torch.full((1, n), 1e-3, dtype=torch.float64) for n in scaled.hidden]
    assert math.isinf(float(f(bad)[0]))


def test_time_limit_still_returns_the_certified_start():
    data = network_data(random_mlp([2, 10, 10, 2], seed=1))
    res = solve_first_order(data, "neuron", time_limit=1e-9)
    assert res.status == "timeout" and res.iterations <= 1
    assert res.certificate.certified
    start = certify_multipliers(data, eclipse_point(data)[0])
    assert res.certificate.value <= start.value * (1 + EXACT_REL)


def test_bound_with_a_time_limit_is_certified():
    net = random_mlp([2, 10, 10, 2], seed=1)
    b = estimate(net, "lipsdp-neuron", time_limit=1e-3)
    assert b.status == "timeout" and b.certified
    assert b.value >= estimate(net, "regions").value * (1 - EXACT_REL)


def test_progress_goes_to_stderr_only(capsys):
    net = random_mlp([2, 4, 2], seed=0)
    b = estimate(net, "lipsdp-layer", solver="eig", progress=True)
    out = capsys.readouterr()
    assert b.certified and out.out == ""


def test_cpu_device_keeps_tensors_there():
    data = network_data(random_mlp([2, 6, 2], seed=0))
    f = SchurValue(prepared(data)[2], device="cpu")
    assert all(W.device.type == "cpu" for W in f.W)
    b = estimate(random_mlp([2, 6, 2], seed=0), "lipsdp-neuron", device="cpu")
    assert b.details["solver"] == "EIG" and b.details["device"] == "cpu" and b.certified


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_device_matches_cpu():
    net = random_mlp([4, 16, 16, 2], seed=0)
    cpu = estimate(net, "lipsdp-neuron", solver="eig", device="cpu")
    gpu = estimate(net, "lipsdp-neuron", solver="eig", device="cuda")
    assert gpu.certified and gpu.details["device"].startswith("cuda")
    assert gpu.value == pytest.approx(cpu.value, rel=1e-4)


def test_wide_shallow_net_defaults_to_first_order():
    net = random_mlp([30, 410, 3], seed=0)
    b = estimate(net, "lipsdp-layer", time_limit=3)
    assert b.details["solver"] == "EIG" and b.certified
    W0, W1 = net.mlp()[0]
    assert b.value <= np.linalg.norm(W0, 2) * np.linalg.norm(W1, 2) * (1 + 1e-9)
