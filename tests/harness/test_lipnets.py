"""Lipschitz-by-design GroupSort nets: the training keeps every layer at norm <= 1, and the
shipped problems/lipnets/ files keep their golden certified sandwich.

Regenerate the golden file only on purpose: LIPOPT_REGEN_GOLDEN=1 pytest
tests/harness/test_lipnets.py -m "slow or not slow".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lipopt_suite import estimate, load
from lipopt_suite.harness.lipnets import LIPNET_PROBLEMS, bjorck, train_lipschitz_net
from lipopt_suite.harness.train import CONSTRAINT_MARGIN

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "lipnets.json"
REGEN = os.environ.get("LIPOPT_REGEN_GOLDEN") == "1"
# deterministic float64 methods: values move by BLAS round-off only (as test_golden.py)
GOLDEN_RTOL = 1e-6
# the certified sandwich: independent certified values may meet to a few ulps
CROSS_RTOL = 1e-9
# enumerations over 9-d inputs take ~20 s each: slow
SLOW_EXACT = ("lipnet_diabetes_bjorck", "lipnet_diabetes_spectral", "maxmin_random_9")


def test_bjorck_converges_to_orthonormal_rows_or_columns():
    g = torch.Generator().manual_seed(0)
    for shape in ((3, 5), (5, 3), (4, 4)):
        V = torch.randn(shape, generator=g, dtype=torch.float64)
        W = bjorck(V, 60)
        small = min(shape)
        G = W @ W.T if shape[0] <= shape[1] else W.T @ W
        assert torch.allclose(G, torch.eye(small, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("design", ["bjorck", "spectral"])
def test_training_keeps_every_layer_at_norm_one(design):
    t = train_lipschitz_net("wine", design, epochs=3)
    weights, _, acts = t.net.mlp(groupsort=True)
    assert t.net.describe() == "mlp 11-12-12-1 maxmin"
    for W in weights:
        assert np.linalg.norm(W, 2) <= 1 - CONSTRAINT_MARGIN / 2
    b = estimate(t.net, "autolip")
    assert b.certified and b.value <= t.info["known_bound"] == 1.0
    assert t.extras["X"].shape == (178, 11)


def _cases() -> list[tuple[str, str, dict]]:
    out = []
    for name in LIPNET_PROBLEMS:
        out += [(name, "2", {"method": m}) for m in ("autolip", "frobenius",
                                                     "lipsdp-groupsort")]
        out += [(name, n, {"method": "autolip"}) for n in ("inf", "1")]
        out.append((name, "2", {"method": "random", "samples": 300}))
        out.append((name, "2", {"method": "regions", "max_input_dim": 11}))
    return out


def _compute(name: str, norm: str, spec: dict) -> dict:
    net = load(ROOT / "problems" / LIPNET_PROBLEMS[name][0])
    options = {k: v for k, v in spec.items() if k != "method"}
    b = estimate(net, spec["method"], norm=norm, **options)
    return {"kind": b.kind, "value": b.value, "certified": b.certified, "status": b.status}


def _key(name: str, norm: str, spec: dict) -> str:
    return f"{name}|{norm}|{spec['method']}"


def _params():
    for name, norm, spec in _cases():
        slow = spec["method"] == "regions" and name in SLOW_EXACT
        yield pytest.param(name, norm, spec, marks=[pytest.mark.slow] if slow else [],
                           id=_key(name, norm, spec))


@pytest.fixture(scope="module")
def golden() -> dict:
    if REGEN:
        results = {_key(*c): _compute(*c) for c in _cases()}
        GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing: LIPOPT_REGEN_GOLDEN=1 pytest {__file__}")
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name, norm, spec", list(_params()))
def test_golden_value(golden, name, norm, spec):
    ref = golden[_key(name, norm, spec)]
    now = _compute(name, norm, spec)
    assert now["status"] == "ok" and now["kind"] == ref["kind"] and now["certified"]
    v, g = now["value"], ref["value"]
    if now["kind"] == "upper":
        assert v <= g * (1 + GOLDEN_RTOL)
    elif now["kind"] == "lower":
        assert v >= g * (1 - GOLDEN_RTOL)
    else:
        assert v == pytest.approx(g, rel=GOLDEN_RTOL)


def test_golden_file_covers_every_problem_and_their_sandwich_holds(golden):
    assert set(golden) == {_key(*c) for c in _cases()}
    for name in LIPNET_PROBLEMS:
        rows = {k.split("|")[2]: r for k, r in golden.items()
                if k.startswith(f"{name}|2|") and r["certified"] and r["status"] == "ok"}
        exact = rows["regions"]
        assert exact["kind"] == "exact"
        highs = [r["value"] for r in rows.values() if r["kind"] == "upper"]
        lows = [r["value"] for r in rows.values() if r["kind"] == "lower"]
        assert max(lows) <= exact["value"] * (1 + CROSS_RTOL)
        assert exact["value"] <= min(highs) * (1 + CROSS_RTOL)
        if name.startswith("lipnet_"):  # 1-Lipschitz by design: certified <= 1
            assert rows["autolip"]["value"] <= 1.0
