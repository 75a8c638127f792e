"""The device plumbing: methods with a `device` option give the same answer on every device.

CI has no GPU, so the CUDA case is skipped there; the CPU case exercises the same code path
(tensors created on the requested device, results brought back to the host)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipopt_suite import estimate
from lipopt_suite.harness.nets import random_cnn, random_mlp

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CASES = [("autolip", {}), ("random", {"samples": 100}),
         ("gradient-ascent", {"restarts": 2, "steps": 20}), ("seqlip-greedy", {"top_k": 8})]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, options", CASES, ids=[c[0] for c in CASES])
def test_same_value_on_every_device(device, name, options):
    net = random_cnn((1, 6, 6), (3,), seed=5) if name == "seqlip-greedy" else random_mlp(
        [3, 6, 2], seed=5)
    ref = estimate(net, name, **options)
    got = estimate(net, name, device=device, **options)
    assert got.value == pytest.approx(ref.value, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_conv_bounds_on_cuda():
    from lipopt_suite.core.linalg import conv_spectral_bounds
    from lipopt_suite.network import Conv2d

    K = np.random.default_rng(0).standard_normal((8, 4, 3, 3))
    a = conv_spectral_bounds(Conv2d(K, None, 1, 1), (4, 32, 32))
    b = conv_spectral_bounds(Conv2d(K, None, 1, 1), (4, 32, 32), device="cuda")
    assert b.upper == pytest.approx(a.upper, rel=1e-9)
