"""Lower bounds: every value is backed by a witness pair whose secant reproduces it."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import Domain, Network, UnsupportedError, estimate
from lipopt_suite.core.lower import batch_jacobians, secant_ratios
from lipopt_suite.harness.nets import random_cnn, random_mlp

LOWER = ["random", "gradient-ascent", "annealing", "grid"]
# Cheap settings: the witness property does not depend on search effort.
FAST = {"annealing": {"maxfun": 200}, "random": {"samples": 300},
        "gradient-ascent": {"restarts": 4, "steps": 60}, "grid": {"resolution": 40}}


def check_witness(net, b, domain=None):
    w = b.details["witness"]
    x, y = np.asarray(w["x"]), np.asarray(w["y"])
    ratio = secant_ratios(net, x[None], y[None], b.norm)[0]
    assert b.value <= ratio
    assert b.value >= ratio * (1 - 1e-6)
    if domain is not None:
        assert domain.contains(np.stack([x, y]), tol=1e-12).all()
        if domain.anchored:
            np.testing.assert_allclose(x, domain.center)


@pytest.mark.parametrize("name", LOWER)
@pytest.mark.parametrize("norm", ["2", "inf", "1"])
def test_witness_reproduces_value(name, norm):
    net = random_mlp([2, 6, 5, 2], seed=4)
    b = estimate(net, name, norm=norm, **FAST[name])
    assert b.kind == "lower" and b.certified and b.value > 0
    check_witness(net, b)


@pytest.mark.parametrize("domain", [Domain.ball([0.5, -0.5], 0.3), Domain.box([0.5, -0.5], 0.2),
                                    Domain.ball([0.5, -0.5], 0.3, anchored=True)])
def test_witnesses_stay_in_the_domain(domain):
    net = random_mlp([2, 6, 5, 2], seed=4)
    for name in LOWER:
        b = estimate(net, name, domain=domain, **FAST[name])
        assert b.domain is domain
        check_witness(net, b, domain)


def test_data_uses_the_points():
    net = random_mlp([3, 5, 1], seed=1)
    X = np.random.default_rng(0).standard_normal((50, 3))
    b = estimate(net, "data", X=X)
    check_witness(net, b)
    assert b.details["points"] == 50


def test_grid_refuses_high_dimension():
    with pytest.raises(UnsupportedError, match="dimension <= 3"):
        estimate(random_mlp([4, 3, 1]), "grid")


def test_linear_network_lower_bounds_are_exact():
    W = np.random.default_rng(2).standard_normal((3, 2))
    net = Network.from_mlp([W])
    for norm, order in [("2", 2), ("inf", np.inf), ("1", 1)]:
        exact = np.linalg.norm(W, ord=order)
        b = estimate(net, "random", norm=norm, samples=5)
        assert b.value == pytest.approx(exact, rel=1e-8)


def test_lower_bounds_on_a_cnn():
    net = random_cnn((1, 6, 6), (3,), seed=3)
    b = estimate(net, "random", samples=50)
    check_witness(net, b)
    b = estimate(net, "gradient-ascent", restarts=2, steps=30)
    check_witness(net, b)


def test_clever_is_an_estimate():
    net = random_mlp([2, 6, 1], seed=0)
    b = estimate(net, "clever", domain=Domain.ball([0.0, 0.0], 1.0), batches=10, batch_size=16)
    assert b.kind == "estimate" and not b.certified and b.value > 0


# ------------------------------------------------------------ search at every scale
FAR = 1000.0  # where the steep region of `far_net` starts


def far_net() -> Network:
    """f(x) = 10 relu(x1 - FAR) + 0.1 relu(x1): constant 10.1, reached only for x1 > FAR.
    The first layer has a unit with no weights (bias 1) that carries FAR to the second."""
    W0, b0 = np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([0.0, 1.0])
    W1 = np.array([[1.0, -FAR], [1.0, 0.0]])
    W2 = np.array([[10.0, 0.1]])
    return Network.from_mlp([W0, W1, W2], [b0, np.zeros(2), np.zeros(1)])


def manual_patterns(net, X):
    """Activation patterns by a plain loop over the layers (independent of lower.py)."""
    ws, bs, acts = net.mlp()
    out = []
    for x in X:
        h, pat = x, []
        for W, b, a in zip(ws[:-1], bs[:-1], acts):
            z = W @ h + b
            pat.append(z > 0)
            h = np.where(z > 0, z, (a.negative_slope if a.name == "leaky_relu" else 0.0) * z)
        out.append(np.concatenate(pat))
    return np.array(out)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_numpy_jacobians_match_autograd(activation):
    from lipopt_suite.core.lower import pl_mlp

    for sizes in ([3, 5, 4, 2], [2, 6, 7], [5, 3, 3, 3, 8]):
        net = random_mlp(sizes, seed=1, activation=activation)
        mlp = pl_mlp(net)
        X = np.random.default_rng(0).standard_normal((200, sizes[0])) * 3
        np.testing.assert_allclose(mlp.jacobians(mlp.patterns(X)),
                                   batch_jacobians(net, X).numpy(), atol=1e-12)
        np.testing.assert_array_equal(np.hstack(mlp.patterns(X)), manual_patterns(net, X))


@pytest.mark.parametrize("seed", range(3))
def test_far_radius_is_where_the_ray_pattern_settles(seed):
    from lipopt_suite.core.lower import far_radii, limit_patterns, pl_mlp

    net = random_mlp([3, 6, 5, 2], seed=seed, bias_scale=1.5, activation="leaky_relu")
    mlp = pl_mlp(net)
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((300, 3))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    c = rng.standard_normal(3)
    R = far_radii(mlp, c, U)
    limit = np.hstack(limit_patterns(mlp, c, U))
    assert np.all(np.isfinite(R)) and np.any(R > 0)
    for factor in (1.0 + 1e-6, 3.0, 1e3):  # beyond R(u): the pattern at infinity
        np.testing.assert_array_equal(manual_patterns(net, c + (factor * R)[:, None] * U),
                                      limit)
    # far enough out, the pattern at infinity is the bias-free network's
    ws, _, _ = net.mlp()
    free = Network.from_mlp(ws, None, "leaky_relu")
    np.testing.assert_array_equal(manual_patterns(free, U), limit)
    below = manual_patterns(net, c + (0.999 * R)[:, None] * U)
    assert np.all((below != limit).any(axis=1)[R > 0])  # and R(u) is tight


def test_cone_points_carry_the_bias_free_jacobians():
    from lipopt_suite.core.lower import cone_points, pl_mlp

    net = random_mlp([2, 7, 7, 1], seed=3, bias_scale=2.0)
    ws, _, _ = net.mlp()
    free = Network.from_mlp(ws)
    U = np.random.default_rng(0).standard_normal((100, 2))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    P = cone_points(pl_mlp(net), np.zeros(2), U, 1.0)
    assert len(P) == 100
    np.testing.assert_allclose(batch_jacobians(net, P).numpy(),
                               batch_jacobians(free, U).numpy(), atol=1e-12)


def test_search_reaches_a_region_far_outside_the_box():
    net = far_net()
    exact = estimate(net, "regions").value
    assert exact == pytest.approx(10.1, rel=1e-12)
    boxed = estimate(net, "random", multiscale=False)
    assert boxed.value < 1.0  # the classic search box holds slopes of 0.1 only
    for name in ("random", "gradient-ascent", "annealing"):
        b = estimate(net, name, **FAST[name])
        check_witness(net, b)
        assert b.value == pytest.approx(exact, rel=1e-6), name
        assert b.details["witness"]["x"][0] > FAR


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("norm", ["2", "inf"])
def test_ascent_and_annealing_never_end_below_random(seed, norm):
    net = random_mlp([3, 5, 4, 2], seed=seed, bias_scale=1.0)
    budget = {"samples": 300, "seed": seed}
    base = estimate(net, "random", norm=norm, **budget).value
    ga = estimate(net, "gradient-ascent", norm=norm, restarts=4, steps=40, **budget)
    an = estimate(net, "annealing", norm=norm, maxfun=150, **budget)
    assert ga.value >= base and an.value >= base
    assert ga.details["sampled_value"] == base and an.details["sampled_value"] == base


def test_never_below_random_in_a_domain_and_on_a_cnn():
    net = random_mlp([2, 6, 5, 2], seed=4)
    for dom in (Domain.ball([0.5, -0.5], 0.3), Domain.box([0.5, -0.5], 0.2)):
        base = estimate(net, "random", domain=dom, samples=300).value
        for name, opts in (("gradient-ascent", {"restarts": 4, "steps": 40}),
                           ("annealing", {"maxfun": 150})):
            b = estimate(net, name, domain=dom, samples=300, **opts)
            assert b.value >= base
            check_witness(net, b, dom)
    cnn = random_cnn((1, 6, 6), (3,), seed=3)
    base = estimate(cnn, "random", samples=50).value
    assert estimate(cnn, "gradient-ascent", samples=50, restarts=2, steps=20).value >= base


def test_multiscale_points_stay_in_the_domain():
    from lipopt_suite.core.lower import _space, search_points

    net = random_mlp([3, 6, 2], seed=0)
    rng = np.random.default_rng(0)
    for dom in (Domain.ball([0.5, -0.5, 1.0], 0.3), Domain.box([0.5, -0.5, 1.0], [0.1, 0.2, 0.3])):
        P, t = search_points(net, _space(net, dom, None, None), 1000, rng)
        assert dom.contains(P, tol=1e-12).all()
        assert t.min() < 0.01 and t.max() == 1.0  # log-uniform scales towards the centre
    P, t = search_points(net, _space(net, None, None, 2.0), 1000, rng, confined=True)
    assert np.abs(P).max() <= 2.0  # an explicit radius confines the search


def test_log_warp_covers_every_scale():
    from lipopt_suite.core.lower import LogWarp

    warp = LogWarp(np.array([1.0, -1.0]), np.array([2.0, 0.5]), 1e4)
    y = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(warp.inverse(warp(y)), y, atol=1e-12)
    np.testing.assert_allclose(warp(np.array([[0.5, -0.5]])), [[3.0, -1.5]])
    np.testing.assert_allclose(warp(np.array([[1.0, 0.0]])), [[1.0 + 2e4, -1.0]])


def test_a_dead_first_layer_unit_does_not_blow_up_the_search():
    # weight decay leaves a row of norm 1e-17 beside a bias of 0.1: its kink lies 1e16
    # away; the search box ignores it and the global searches still run near the data
    from lipopt_suite.core.lower import search_box

    net = random_mlp([4, 6, 3], seed=0)
    (W0, W1), (b0, b1), _ = net.mlp()
    W0 = W0.copy()
    W0[2] = 1e-17
    b0 = b0.copy()
    b0[2] = 0.1
    dead = Network.from_mlp([W0, W1], [b0, b1], "relu")
    lo, hi = search_box(dead)
    assert hi.max() < 1e3
    for name in ("random", "gradient-ascent"):
        b = estimate(dead, name, seed=0)
        assert b.certified and 0 < b.value <= estimate(dead, "autolip").value
