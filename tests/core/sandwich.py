"""Shared checks for upper-bound methods on seeded nets: exact <= bound <= AutoLip."""

from __future__ import annotations

from lipopt_suite import estimate
from lipopt_suite.harness.nets import random_mlp

# regions computes the exact constant from float64 SVDs
EXACT_REL = 1e-9


def check_between_exact_and_autolip(method: str, sizes: list[int], seed: int) -> None:
    net = random_mlp(sizes, seed=seed)
    b = estimate(net, method)
    assert b.certified
    assert estimate(net, "regions").value * (1 - EXACT_REL) <= b.value
    assert b.value <= estimate(net, "autolip").value


def check_between_ascent_and_autolip(method: str, activation: str, seed: int) -> None:
    net = random_mlp([3, 8, 8, 2], seed=seed, activation=activation)
    b = estimate(net, method)
    assert b.certified
    assert estimate(net, "gradient-ascent").value <= b.value <= estimate(net, "autolip").value
