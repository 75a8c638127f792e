"""Tests of the l2 attacks used by `lipopt certify`: on linear classifiers the minimal
adversarial perturbation is known in closed form (distance to the nearest decision
hyperplane), so the attacks' upper bounds can be checked from both sides."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lipopt_suite.apps.certify import certified_radius
from lipopt_suite.core import attack
from lipopt_suite.errors import InputError
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.network import Affine, Network

# FGSM bisects 40 times from a bracket within a factor 2 of the answer: ~1e-12 relative.
FGSM_TOL = 1e-9
# PGD bisects until the bracket is within rel_tol = 1e-2 of its upper end.
PGD_TOL = 2e-2


def _linear(seed: int, classes: int = 2, n: int = 5) -> tuple[Network, np.ndarray, int, float]:
    """A linear classifier, a centre, its class and the exact minimal l2 perturbation."""
    rng = np.random.default_rng(seed)
    W, b = rng.normal(size=(classes, n)), rng.normal(size=classes)
    x0 = rng.normal(size=n)
    z = W @ x0 + b
    k = int(np.argmax(z))
    dist = min((z[k] - z[j]) / np.linalg.norm(W[j] - W[k]) for j in range(classes) if j != k)
    return Network((Affine(W, b),), (n,)).validate(), x0, k, float(dist)


def test_margin_loss() -> None:
    z = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]])
    assert attack.margin_loss(z, 1).tolist() == [-1.0, 6.0]
    assert attack.margin_loss(z, 0).tolist() == [2.0, 5.0]


@pytest.mark.parametrize("seed", range(4))
def test_attacks_on_a_two_class_linear_classifier(seed: int) -> None:
    net, x0, k, exact = _linear(seed)
    fgsm = attack.fgsm_l2(net, x0, k)
    # the margin's gradient is the hyperplane's normal: FGSM is optimal here
    assert fgsm.found and exact <= fgsm.radius * (1 + 1e-12)
    assert fgsm.radius == pytest.approx(exact, rel=FGSM_TOL)
    pgd = attack.pgd_min_perturbation(net, x0, k, restarts=8, steps=50, seed=seed)
    assert pgd.found and exact * (1 - 1e-12) <= pgd.radius <= exact * (1 + PGD_TOL)
    assert int(np.argmax(net(pgd.x))) == pgd.adversarial_label != k
    loss, x = attack.pgd_l2(net, x0, k, 0.99 * exact, restarts=8, steps=50)
    assert loss < 0 and np.linalg.norm(x - x0) <= 0.99 * exact * (1 + 1e-12)
    loss, _ = attack.pgd_l2(net, x0, k, 1.01 * exact, restarts=8, steps=50)
    assert loss > 0
    # the certified radius lies below every adversarial example
    cert = certified_radius(net, x0, k)
    assert 0 < cert.local_radius <= exact
    assert cert.global_radius <= cert.local_radius


@pytest.mark.parametrize("seed", range(3))
def test_attacks_never_beat_the_exact_distance_with_many_classes(seed: int) -> None:
    net, x0, k, exact = _linear(10 + seed, classes=5, n=6)
    fgsm = attack.fgsm_l2(net, x0, k)
    pgd = attack.pgd_min_perturbation(net, x0, k, restarts=16, steps=80, seed=seed)
    assert fgsm.found and fgsm.radius >= exact * (1 - 1e-12)
    assert pgd.found and exact * (1 - 1e-12) <= pgd.radius <= exact * (1 + 5 * PGD_TOL)


def test_pgd_points_stay_in_the_ball() -> None:
    net = random_mlp([4, 16, 16, 3], 2)
    x0 = np.random.default_rng(0).normal(size=4)
    label = int(np.argmax(net(x0)))
    for radius in (1e-3, 0.3, 5.0):
        loss, x = attack.pgd_l2(net, x0, label, radius, restarts=6, steps=30)
        assert np.linalg.norm(x - x0) <= radius * (1 + 1e-12)
        z = net(x)
        assert loss == pytest.approx(np.max(np.delete(z, label)) - z[label], abs=1e-12)


def test_no_adversarial_example_for_a_constant_classifier() -> None:
    net = Network((Affine(np.zeros((3, 2)), [1.0, 0.0, 0.0]),), (2,)).validate()
    x0 = np.zeros(2)
    assert not attack.fgsm_l2(net, x0, 0).found
    res = attack.pgd_min_perturbation(net, x0, 0, restarts=2, steps=5, max_doublings=4)
    assert not res.found and math.isinf(res.radius) and res.to_dict()["radius"] is None


def test_misclassified_centre_is_its_own_witness() -> None:
    net, x0, k, _ = _linear(1)
    res = attack.pgd_min_perturbation(net, x0, 1 - k)
    assert res.radius == 0.0 and res.adversarial_label == k


def test_bad_input() -> None:
    net, x0, k, _ = _linear(2)
    with pytest.raises(InputError, match="radius"):
        attack.pgd_l2(net, x0, k, 0.0)
    with pytest.raises(InputError, match="entries"):
        attack.fgsm_l2(net, x0[:3], k)
    with pytest.raises(InputError, match="out of range"):
        attack.pgd_min_perturbation(net, x0, 2)
