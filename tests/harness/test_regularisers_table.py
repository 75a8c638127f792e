"""The regularisers family and preset: shipped nets keep their budgets and regenerate bit for
bit; certified margins and radii are sound; a run of the preset writes its table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lipopt_suite import Network, estimate
from lipopt_suite.harness.problems import Problem, check_files, load_manifest, manifest_text
from lipopt_suite.harness.regularisers_table import (
    REGULARISER_PROBLEMS,
    certified_margins,
    certified_radii,
    generate,
)
from lipopt_suite.harness.runner import compare
from lipopt_suite.harness.trainer import train, write_run

ROOT = Path(__file__).resolve().parents[2] / "problems"
# the certified bound of a designed net may meet its budget to a few ulps
CERT_RTOL = 1e-9
# float64 evaluation of a 3x2 linear map at unit scale
ROUNDING = 1e-12


@pytest.fixture(scope="module")
def family():
    return {n: p for n, p in load_manifest(ROOT).items() if p.family == "regularisers"}


def test_every_net_is_shipped_with_its_run(family) -> None:
    assert set(family) == set(REGULARISER_PROBLEMS)
    for p in family.values():
        info = json.loads(p.path.with_suffix(".json").read_text())
        assert info["regulariser"] == p.params["regulariser"]
        assert info["strength"] == p.params["strength"] and info["sizes"][0] == 64
        assert 0 <= info["test_accuracy"] <= 1 and info["n_test"] == 300


def test_designed_nets_are_certified_below_their_budget(family) -> None:
    for name, p in family.items():
        if not p.known_upper:
            continue
        (norm, budget), = p.known_upper.items()
        net = check_files([p])[name][0]
        b = estimate(net, "autolip", norm=norm)
        assert b.certified and b.value <= budget * (1 + CERT_RTOL), (name, b.value)


def test_regeneration_is_deterministic(family) -> None:
    name = "reg_projection_l2_1"
    net, extras, info = generate(family[name].params)
    with np.load(family[name].path, allow_pickle=False) as old:
        weights = [k for k in old.files if k[0] in "Wb" and k[1:].isdigit()]
        ours = net.mlp()
        for k in weights:
            new = (ours[0] if k[0] == "W" else ours[1])[int(k[1:])]
            # same seed, float64, one thread; 1e-9 leaves room for another BLAS
            np.testing.assert_allclose(new, old[k], rtol=1e-9, atol=1e-12)
    shipped = json.loads(family[name].path.with_suffix(".json").read_text())
    assert shipped["test_accuracy"] == pytest.approx(info["test_accuracy"])


def test_margins_and_radii_are_exact_where_the_bound_is_tight() -> None:
    # two classes with rows w and -w: the logit difference is 2 w.x, its gradient norm
    # 2 ||w|| = sqrt(2) ||W||_2, so the certified radius is the distance to the boundary
    w = np.array([0.6, -0.8, 0.0])
    net = Network.from_mlp([np.vstack([w, -w])], [np.zeros(2)], "relu")
    X = np.array([[1.0, 0.0, 3.0], [-2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    y = np.array([0, 1, 0])
    m = certified_margins(net, X, y)
    exact = 2 * (X @ w) * np.where(y == 0, 1, -1)
    assert np.all(m <= exact) and np.allclose(m, exact, rtol=ROUNDING, atol=ROUNDING)
    L = estimate(net, "autolip").value
    r = certified_radii(m, L)
    distance = np.abs(X @ w) / np.linalg.norm(w)
    assert r[2] == 0.0  # misclassified: nothing certified
    assert np.all(r[:2] <= distance[:2]) and np.allclose(r[:2], distance[:2], rtol=1e-9)


def test_the_preset_writes_its_table(tmp_path) -> None:
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    X = 2 * rng.standard_normal((3, 4))[y] + 0.5 * rng.standard_normal((60, 4))
    np.savez(tmp_path / "toy.npz", X=X, y=y)
    problems = []
    for reg, s in (("none", 0.0), ("projection-l2", 2.0), ("gradient-penalty", 1.0)):
        run = train(reg, s, hidden=(5,), epochs=3, batch_size=16, data=tmp_path / "toy.npz",
                    progress=False)
        name = f"toy_{reg.replace('-', '_')}"
        write_run(run, tmp_path / "regularisers" / f"{name}.npz")
        problems.append(Problem(name, f"regularisers/{name}.npz", "regularisers", "toy",
                                ("2",), known_upper={"2": 2.0} if s == 2.0 else {}))
    (tmp_path / "manifest.toml").write_text(manifest_text(problems))
    out = tmp_path / "out"
    compare(preset="regularisers", root=tmp_path, out=out, jobs=1, progress=False, reference=out,
            methods=["autolip", "lipsdp-neuron", "data", "gradient-ascent"])
    table = json.loads((out / "regularisers_table.json").read_text())
    assert [r["regulariser"] for r in table] == ["none", "projection-l2", "gradient-penalty"]
    for r in table:
        assert r["lower"] <= r["upper"] and r["upper_method"] in ("autolip", "lipsdp-neuron")
        assert 0 <= r["certified_0.1"] <= 1 and r["radius_mean"] >= 0
    assert table[1]["upper"] <= 2.0 * (1 + CERT_RTOL)
    assert table[1]["verdict"] == "guaranteed upper"
    text = (out / "regularisers.md").read_text()
    assert "| gradient-penalty | 1 |" in text and (out / "regularisers.png").exists()
