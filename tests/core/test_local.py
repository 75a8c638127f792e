"""Tests of the anchored local bound `local`, certified radii and `lipopt certify`.

Soundness is checked against brute force: secant ratios ||f(x) - f(x0)|| / ||x - x0|| from
dense samples of the ball and line searches along sampled rays (each is a lower bound on the
anchored constant by definition), never against the method itself.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lipopt_suite.bound import Domain
from lipopt_suite.core import local as L
from lipopt_suite.core.lower import batch_jacobians
from lipopt_suite.errors import InputError, UnsupportedError
from lipopt_suite.harness.nets import random_cnn, random_mlp
from lipopt_suite.network import (
    Activation,
    Affine,
    AvgPool2d,
    Conv2d,
    Flatten,
    MaxPool2d,
    Network,
)
from lipopt_suite.registry import estimate

# Secant ratios are computed in float64 from f(x) - f(x0); with |f| / (L t) <= 1e4 on these
# nets and steps t >= 1e-4 eps, cancellation costs at most ~1e-12 relative. The certified
# bound itself carries >= 1e-8 relative slack, so any violation above this is real.
SECANT_TOL = 1e-10
# Acceptance: as eps -> 0 off every kink the bound tends to ||J(x0)||_2 within 1e-6.
JACOBIAN_TOL = 1e-6
# Two computations of the same certified bound (explicit matrix vs sparse Gram, dense vs
# banded factorisation) differ only by their certificate slacks (<= 1e-6 relative).
PATH_TOL = 1e-5
RADII = (1e-3, 1e-2, 0.1, 1.0, 10.0)
DIGITS = Path(__file__).resolve().parents[2] / "problems" / "digits"


# ------------------------------------------------------------------------ helpers
def _nets() -> list[tuple[str, Network, np.ndarray]]:
    """30 seeded small ReLU MLPs (input dimension 2-3) and 6 small CNNs, with centres."""
    out = []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        n_in = 2 + seed % 2
        depth = 2 + seed % 3
        sizes = [n_in] + [int(rng.integers(6, 14))] * depth + [int(rng.integers(1, 4))]
        out.append((f"mlp{seed}", random_mlp(sizes, seed), rng.normal(size=n_in)))
    for seed in range(6):
        rng = np.random.default_rng(200 + seed)
        net = random_cnn((1, 4, 4), (2, 3), outputs=3, seed=seed)
        out.append((f"cnn{seed}", net, rng.random(16)))
    return out


def _tight_nets() -> list[tuple[str, Network, np.ndarray]]:
    """Nets whose anchored constant the bound attains, so an optimistic slope or pooling
    constant shows up as a secant above it: one ReLU unit (Theorem 1 is exact for it), and
    an overlapping max pooling whose largest input sits in every window (Theorem 3)."""
    out = []
    for seed in range(4):
        rng = np.random.default_rng(300 + seed)
        n = 2 + seed % 2
        w = rng.normal(size=(1, n))
        x0 = rng.normal(size=n)
        # y0 = -0.004 ||w||: the unit switches on inside every ball of radius > 0.004
        b = -float((w @ x0)[0]) - 0.004 * np.linalg.norm(w) * (1 if seed < 2 else -1)
        net = Network((Affine(w, [b]), Activation("relu"), Affine([[1.5]], [0.0])), (n,))
        out.append((f"unit{seed}", net.validate(), x0))
    for k, s, size in ((3, 1, 5), (3, 2, 7)):
        rng = np.random.default_rng(k + s)
        x0 = 0.1 * rng.random(size * size)
        x0[(size // 2 if s == 1 else 2) * size + (size // 2 if s == 1 else 2)] = 1.0
        pooled = MaxPool2d(k, s).out_shape((1, size, size))
        m = int(np.prod(pooled))
        net = Network((Conv2d(np.ones((1, 1, 1, 1)), None), MaxPool2d(k, s), Flatten(),
                       Affine(np.eye(m), None)), (1, size, size))
        out.append((f"pool{k}{s}", net.validate(), x0))
    return out


NETS = _nets()
TIGHT = _tight_nets()


def _secant_max(net: Network, x0: np.ndarray, eps: float, rng: np.random.Generator,
                rays: int = 400) -> float:
    """Largest ||f(x) - f(x0)|| / ||x - x0|| over dense samples of the ball and a grid line
    search along each sampled ray (t from 1e-4 eps to eps)."""
    n = x0.size
    f0 = net(x0.reshape(net.input_shape)).reshape(-1)
    d = rng.normal(size=(rays, n))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d = np.concatenate([d, np.eye(n), -np.eye(n)])  # and every coordinate direction
    t = eps * np.geomspace(1e-4, 1.0, 48)
    rays = x0 + (d[:, None, :] * t[None, :, None]).reshape(-1, n)
    r = eps * rng.random(3000) ** (1.0 / n)
    d2 = rng.normal(size=(3000, n))
    d2 /= np.linalg.norm(d2, axis=1, keepdims=True)
    ball = x0 + d2 * r[:, None]
    X = np.concatenate([rays, ball])
    fx = net(X.reshape(-1, *net.input_shape)).reshape(len(X), -1)
    ratio = np.linalg.norm(fx - f0, axis=1) / np.linalg.norm(X - x0, axis=1)
    return float(ratio.max())


# ------------------------------------------------------------------------ soundness
@pytest.mark.parametrize("name,net,x0", NETS + TIGHT, ids=[n for n, _, _ in NETS + TIGHT])
def test_local_between_secants_and_autolip(name: str, net: Network, x0: np.ndarray) -> None:
    anchor = L.prepare(net, x0)
    auto = estimate(net, "autolip").value
    rng = np.random.default_rng(0)
    previous = 0.0
    for eps in RADII:
        res = L.anchored_bound(anchor, eps)
        assert res.certified
        tight = name.startswith(("unit", "pool"))
        secant = _secant_max(net, x0, eps, rng, 4000 if tight else 400)
        assert secant <= res.value * (1 + SECANT_TOL), (name, eps, secant, res.value)
        assert res.value <= auto, (name, eps, res.value, auto)
        assert res.value >= previous * (1 - SECANT_TOL), (name, eps)  # grows with eps
        previous = res.value
        if tight:  # attained, up to the angle between sampled rays and the worst one
            assert secant >= res.value * (1 - 1e-2), (name, eps, secant, res.value)


@pytest.mark.parametrize("name,net,x0", NETS, ids=[n for n, _, _ in NETS])
def test_small_radius_tends_to_jacobian_norm(name: str, net: Network, x0: np.ndarray) -> None:
    J = batch_jacobians(net, x0[None])[0]
    jn = float(torch.linalg.matrix_norm(J, 2))
    value = L.anchored_bound(L.prepare(net, x0), 1e-9).value
    assert abs(value - jn) <= JACOBIAN_TOL * max(jn, 1e-12), (name, value, jn)


def test_registered_method_matches_core_and_lower_bounds_stay_below() -> None:
    _, net, x0 = NETS[3]
    for eps in (0.05, 0.5):
        dom = Domain.ball(x0, eps, anchored=True)
        b = estimate(net, "local", domain=dom)
        assert b.kind == "upper" and b.certified and b.quantity == "anchored"
        assert b.value == L.anchored_bound(L.prepare(net, x0), eps).value
        for name, opts in (("random", {}), ("gradient-ascent", {"restarts": 4, "steps": 60})):
            low = estimate(net, name, domain=dom, **opts)
            assert low.value <= b.value * (1 + SECANT_TOL)


def test_merging_is_never_looser_than_the_paper_product() -> None:
    for _, net, x0 in NETS[::5]:
        anchor = L.prepare(net, x0)
        for eps in RADII:
            merged = L.anchored_bound(anchor, eps).value
            plain = L.anchored_bound(anchor, eps, merge=False).value
            assert merged <= plain * (1 + PATH_TOL)


def test_linear_network_bound_is_its_norm() -> None:
    """An affine map's anchored constant is ||W||_2 at every radius (analytic case)."""
    W = np.random.default_rng(1).normal(size=(4, 3))
    net = Network((Affine(W, np.ones(4)),), (3,)).validate()
    sigma = float(np.linalg.svd(W, compute_uv=False)[0])
    for eps in RADII:
        value = L.anchored_bound(L.prepare(net, np.zeros(3)), eps).value
        assert sigma <= value <= sigma * (1 + PATH_TOL)


def _avgpool_net() -> tuple[Network, np.ndarray]:
    rng = np.random.default_rng(5)
    layers = (Conv2d(rng.normal(size=(3, 2, 3, 3)) / 3, 0.1 * rng.normal(size=3), 1, 1),
              Activation("relu"), AvgPool2d(2, 2), Conv2d(rng.normal(size=(2, 3, 2, 2)) / 2,
                                                           None, 1, 0),
              Activation("relu"), MaxPool2d(2, 1, 1), Flatten(), Affine(rng.normal(size=(2, 18)),
                                                                       None))
    return Network(layers, (2, 6, 6)).validate(), rng.random(72)


def test_avgpool_strides_and_pool_padding_are_sound() -> None:
    net, x0 = _avgpool_net()
    anchor = L.prepare(net, x0)
    rng = np.random.default_rng(1)
    for eps in (1e-3, 0.1, 2.0):
        value = L.anchored_bound(anchor, eps).value
        assert _secant_max(net, x0, eps, rng) <= value * (1 + SECANT_TOL)
        # the operator (sparse Gram) path also bounds the pooling and the convolution after
        # it separately, where the explicit path takes their product as one block
        op = L.anchored_bound(anchor, eps, explicit_max=0).value
        plain = L.anchored_bound(anchor, eps, merge=False).value
        assert plain <= op * (1 + PATH_TOL) and value <= plain * (1 + PATH_TOL)
        assert _secant_max(net, x0, eps, rng) <= op * (1 + SECANT_TOL)


@pytest.mark.parametrize("name,net,x0", NETS[30:33], ids=[n for n, _, _ in NETS[30:33]])
def test_operator_and_banded_paths_agree_with_explicit(name: str, net: Network,
                                                       x0: np.ndarray) -> None:
    anchor = L.prepare(net, x0)
    for eps in (1e-3, 0.3, 5.0):
        plain = L.anchored_bound(anchor, eps, merge=False)
        dense = L.anchored_bound(anchor, eps, explicit_max=0)
        banded = L.anchored_bound(anchor, eps, explicit_max=0, dense_gram_max=0)
        assert any(b.how.startswith("gram-banded") for b in banded.blocks)
        assert dense.value == pytest.approx(plain.value, rel=PATH_TOL)
        assert banded.value == pytest.approx(plain.value, rel=PATH_TOL)


def test_strided_convolution_uses_the_output_gram() -> None:
    """A stride-2 convolution with fewer output than input channels: the Gram matrix on its
    active outputs is the cheaper one, and it gives the explicit block's bound."""
    rng = np.random.default_rng(0)
    net = Network((Conv2d(rng.normal(size=(2, 6, 3, 3)), 0.1 * rng.normal(size=2), 2, 1),
                   Activation("relu"), Flatten(), Affine(rng.normal(size=(3, 50)), None)),
                  (6, 10, 10)).validate()
    x0 = rng.random(600)
    anchor = L.prepare(net, x0)
    for eps in (1e-3, 0.5):
        op = L.anchored_bound(anchor, eps, explicit_max=0, dense_gram_max=0)
        assert op.blocks[0].how.startswith("gram-banded(outputs")
        plain = L.anchored_bound(anchor, eps, merge=False).value
        assert op.value == pytest.approx(plain, rel=PATH_TOL)
        assert _secant_max(net, x0, eps, np.random.default_rng(1)) <= op.value * (1 + SECANT_TOL)


def test_over_budget_layers_fall_back_to_their_global_norm() -> None:
    _, net, x0 = NETS[31]
    anchor = L.prepare(net, x0)
    res = L.anchored_bound(anchor, 0.1, explicit_max=0, cholesky_budget=0.0)
    assert any("over budget" in b.how for b in res.blocks) and res.certified
    assert res.value >= L.anchored_bound(anchor, 0.1, explicit_max=0).value


# ------------------------------------------------------------------------ max pooling
@pytest.mark.parametrize("k,s,size", [(2, 2, 6), (2, 1, 5), (3, 1, 5), (3, 2, 7), (3, 3, 6),
                                      (4, 2, 8)])
def test_maxpool_overlap_constant_matches_brute_force(k: int, s: int, size: int) -> None:
    layer = MaxPool2d(k, s)
    free = torch.ones((1, size, size), dtype=torch.bool)
    value = L.maxpool_constant(layer, free)
    assert value == pytest.approx(math.sqrt(math.ceil(k / s) ** 2), rel=1e-15)
    assert value == pytest.approx(math.sqrt(layer.overlap), rel=1e-15)
    rng = np.random.default_rng(k * 10 + s)

    def pool(x: np.ndarray) -> np.ndarray:
        return F.max_pool2d(torch.as_tensor(x), k, s).reshape(len(x), -1).numpy()

    # random search: random inputs, perturbed along every coordinate and random directions
    X = rng.normal(size=(3000, 1, size, size))
    h = 1e-7
    best = 0.0
    fx = pool(X)
    for i in range(size * size):
        Y = X.copy()
        Y.reshape(len(X), -1)[:, i] += h
        best = max(best, float((np.linalg.norm(pool(Y) - fx, axis=1) / h).max()))
    D = rng.normal(size=X.shape)
    ratios = np.linalg.norm(pool(X + D) - fx, axis=1) / np.linalg.norm(D.reshape(len(X), -1),
                                                                       axis=1)
    assert ratios.max() <= value * (1 + 1e-12)
    assert best <= value * (1 + 1e-6)  # 1e-7 steps: secants exact up to ~1e-8
    assert best >= value * (1 - 1e-6)  # the search reaches the constant


def test_maxpool_constant_with_restricted_inputs() -> None:
    layer = MaxPool2d(3, 1)
    rng = np.random.default_rng(0)
    free = torch.as_tensor(rng.random((1, 5, 5)) < 0.3)
    free[0, 2, 2] = False  # the only input in 9 windows is constant
    value = L.maxpool_constant(layer, free)
    counts = L.window_counts(layer, (5, 5))
    assert value == pytest.approx(math.sqrt(float(counts[free[0]].max())))
    X = rng.normal(size=(2000, 1, 5, 5))
    D = rng.normal(size=X.shape) * free.numpy()
    fx = F.max_pool2d(torch.as_tensor(X), 3, 1).reshape(len(X), -1)
    fy = F.max_pool2d(torch.as_tensor(X + D), 3, 1).reshape(len(X), -1)
    ratios = (fx - fy).norm(dim=1).numpy() / np.linalg.norm(D.reshape(len(X), -1), axis=1)
    assert ratios.max() <= value * (1 + 1e-12)


# ------------------------------------------------------------------------ bad input
def test_bad_input_raises_one_line_errors() -> None:
    _, net, x0 = NETS[0]
    with pytest.raises(InputError, match="centre has 5 entries"):
        L.prepare(net, np.zeros(5))
    with pytest.raises(InputError, match="radius must be positive"):
        L.anchored_bound(L.prepare(net, x0), 0.0)
    with pytest.raises(InputError, match="radius must be positive"):
        L.anchored_bound(L.prepare(net, x0), -1.0)
    tanh = random_mlp([2, 5, 2], 0, activation="tanh")
    with pytest.raises(UnsupportedError, match="(?i)relu"):
        estimate(tanh, "local", domain=Domain.ball(np.zeros(2), 0.1, anchored=True))
    with pytest.raises(UnsupportedError, match="anchored"):
        estimate(net, "local", domain=Domain.ball(x0, 0.1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    for _, net, x0 in (NETS[2], NETS[31]):
        for eps in (1e-3, 0.5):
            cpu = L.anchored_bound(L.prepare(net, x0), eps, explicit_max=0).value
            gpu = L.anchored_bound(L.prepare(net, x0, device="cuda"), eps, explicit_max=0).value
            assert gpu == pytest.approx(cpu, rel=PATH_TOL)
