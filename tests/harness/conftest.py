"""Shared fixtures of the harness tests: a tiny problem directory built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.harness.problems import DomainSpec, Problem, manifest_text
from lipopt_suite.io import save

FAULTY = "tests.harness.faulty_methods"


def make_suite(root: Path, count: int = 3, *, local: bool = False) -> Path:
    """`count` tiny random MLPs (2 inputs) with a manifest; optionally one local problem."""
    problems = []
    for k in range(count):
        net = random_mlp([2, 5, 4, 1], seed=k)
        save(net, root / f"net{k}.npz", X=np.random.default_rng(k).standard_normal((20, 2)),
             center=np.zeros(2))
        problems.append(Problem(f"net{k}", f"net{k}.npz", "toy", "tiny random MLP",
                                ("2", "inf"), series="toy", x=k + 2))
    if local:
        problems.append(Problem("net0_local", "net0.npz", "toy", "tiny MLP, local", ("2",),
                                domain=DomainSpec("ball", (0.1, 0.5), anchored=True)))
    (root / "manifest.toml").write_text(manifest_text(problems))
    return root


@pytest.fixture()
def suite(tmp_path: Path) -> Path:
    return make_suite(tmp_path / "problems")
