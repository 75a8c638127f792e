"""Training helpers: operator-norm projections and deterministic constrained training."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt_suite import estimate
from lipopt_suite.core.linalg import operator_norm
from lipopt_suite.errors import InputError
from lipopt_suite.harness.train import (
    CONSTRAINT_MARGIN,
    CONSTRAINT_NORM,
    CONSTRAINTS,
    project_operator_norm,
    synthetic_gp,
    train_constrained_mlp,
)

# float64 SVD / sorting round-off on 6x5 matrices of unit scale
ROUNDING = 1e-12
# cvxpy with Clarabel solves the projection QP to about 1e-8 (its default tolerances)
QP_TOL = 1e-5


@pytest.mark.parametrize("norm", ["2", "inf", "1"])
def test_projection_lands_in_the_ball_and_keeps_inner_points(norm: str) -> None:
    rng = np.random.default_rng(0)
    W = 3 * rng.standard_normal((6, 5))
    P = project_operator_norm(W, norm, 1.0)
    assert operator_norm(P, norm) <= 1.0 + ROUNDING
    assert operator_norm(P, norm) == pytest.approx(1.0, abs=1e-9)  # W was outside
    np.testing.assert_allclose(project_operator_norm(P, norm, 1.0), P, atol=ROUNDING)
    inner = 0.1 * W / operator_norm(W, norm)
    np.testing.assert_allclose(project_operator_norm(inner, norm, 1.0), inner, atol=0)


@pytest.mark.parametrize("norm", ["2", "inf", "1"])
def test_projection_is_the_nearest_point(norm: str) -> None:
    import cvxpy as cp

    rng = np.random.default_rng(1)
    W = 2 * rng.standard_normal((4, 3))
    X = cp.Variable(W.shape)
    if norm == "2":
        constraint = cp.sigma_max(X) <= 1
    elif norm == "inf":
        constraint = cp.max(cp.sum(cp.abs(X), axis=1)) <= 1
    else:
        constraint = cp.max(cp.sum(cp.abs(X), axis=0)) <= 1
    prob = cp.Problem(cp.Minimize(cp.sum_squares(X - W)), [constraint])
    prob.solve(solver="CLARABEL")
    ours = np.sum((project_operator_norm(W, norm, 1.0) - W) ** 2)
    assert ours == pytest.approx(prob.value, rel=QP_TOL, abs=QP_TOL)


def test_unknown_norm_and_constraint_are_refused() -> None:
    with pytest.raises(InputError):
        project_operator_norm(np.eye(2), "3", 1.0)
    with pytest.raises(InputError):
        train_constrained_mlp("l3")


@pytest.mark.parametrize("constraint", CONSTRAINTS)
def test_constrained_training_gives_its_bound_and_is_deterministic(constraint: str) -> None:
    kw = dict(radius=1.2, layers=3, width=8, n=60, epochs=3)
    a = train_constrained_mlp(constraint, **kw)
    b = train_constrained_mlp(constraint, **kw)
    for la, lb in zip(a.net.layers, b.net.layers):
        if hasattr(la, "W"):
            assert np.array_equal(la.W, lb.W) and np.array_equal(la.b, lb.b)
    norm = CONSTRAINT_NORM[constraint]
    targets = [1.0, 1.0, 1.2 ** 3] if constraint == "spectral" else [1.2] * 3
    weights = [layer.W for layer in a.net.layers if hasattr(layer, "W")]
    for W, t in zip(weights, targets):
        assert operator_norm(W, norm) <= t * (1 - CONSTRAINT_MARGIN) * (1 + ROUNDING)
    assert a.info["known_bound"] == pytest.approx(1.2 ** 3)
    bound = estimate(a.net, "autolip", norm=norm)
    assert bound.certified and bound.value <= a.info["known_bound"]


def test_the_synthetic_task_is_a_smooth_unit_variance_sample() -> None:
    X, y = synthetic_gp(300, seed=3)
    assert X.shape == (300, 2) and y.shape == (300,)
    assert 2.5 < X.std() < 5.5  # inputs 4 * N(0, 1)
    assert 0.3 < y.var() < 3.0  # an RBF process with unit variance
    X2, y2 = synthetic_gp(300, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
