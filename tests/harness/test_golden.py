"""Regression tests on tightness: cheap methods on the shipped problems against golden values.

A test fails when a method gets looser than its golden value (an upper bound larger, a lower
bound smaller) by more than LOOSER_RTOL, when an exact value moves, or when any certified
lower bound (or exact value) of a problem and norm crosses a certified upper bound.
Tighter values pass; regenerate the golden file only on purpose:

    LIPOPT_REGEN_GOLDEN=1 pytest tests/harness/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lipopt_suite import estimate
from lipopt_suite.harness.problems import check_files, load_manifest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "tightness.json"
REGEN = os.environ.get("LIPOPT_REGEN_GOLDEN") == "1"
# Every method here is deterministic (fixed seeds, float64); values move only by float
# round-off between BLAS builds, far below 1e-6 relative. A real loosening is larger.
LOOSER_RTOL = 1e-6
# An exact value may move by round-off only, in either direction.
EXACT_RTOL = 1e-6
# Independently computed certified values that coincide mathematically (a 2-D grid hitting
# the exact maximiser) may differ by a few ulps.
CROSS_RTOL = 1e-9

CHEAP_UPPER = ("frobenius", "autolip")
CHEAP_LOWER = ("random",)
GRID_PROBLEMS = ("scaman_mlp4", "tiny0", "tiny1", "constrained_l2",
                 "constrained_linf", "constrained_l1", "constrained_spectral")
EXACT_PROBLEMS = ("tiny0", "tiny1", "tiny2")
DATA_PROBLEMS = ("scaman_mlp4", "scaman_mlp10", "constrained_l2")
# smaller searches than the defaults keep the suite fast; fixed here, so still regressions
OPTIONS = {"random": {"samples": 300}, "grid": {"resolution": 101}}


def cases(manifest) -> list[tuple[str, str, str]]:
    """(problem, norm, method) triples of the regression suite."""
    out = []
    for name, p in manifest.items():
        if p.domain is not None and p.domain.anchored:
            continue  # the same files appear as global problems (the digits nets)
        methods = list(CHEAP_UPPER + CHEAP_LOWER)
        if name in GRID_PROBLEMS:
            methods.append("grid")
        if name in EXACT_PROBLEMS:
            methods += ["regions", "seqlip"]
        if name in DATA_PROBLEMS:
            methods.append("data")
        if p.family == "graphs":
            methods.remove("frobenius")  # a product of layer norms: sequential nets only
        for norm in p.norms:
            out += [(name, norm, m) for m in methods
                    if not (m in ("frobenius", "seqlip") and norm != "2")]
    return out


@pytest.fixture(scope="module")
def computed() -> dict[str, dict]:
    manifest = load_manifest(ROOT / "problems")
    loaded = check_files(manifest.values())
    results = {}
    for name, norm, method in cases(manifest):
        net, extras = loaded[name]
        options = {"X": extras["X"]} if method == "data" else dict(OPTIONS.get(method, {}))
        b = estimate(net, method, norm=norm, **options)
        results[f"{name}|{norm}|{method}"] = {"kind": b.kind, "value": b.value,
                                              "certified": b.certified, "status": b.status}
    for name, p in manifest.items():
        for norm, value in p.known_upper.items():
            results[f"{name}|{norm}|guaranteed"] = {"kind": "upper", "value": value,
                                                    "certified": True, "status": "ok"}
    if REGEN:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return results


@pytest.fixture(scope="module")
def golden() -> dict[str, dict]:
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing: LIPOPT_REGEN_GOLDEN=1 pytest {__file__}")
    return json.loads(GOLDEN.read_text())


def test_the_golden_file_covers_the_suite(computed, golden) -> None:
    assert set(computed) == set(golden), (
        "the regression cases changed; regenerate with LIPOPT_REGEN_GOLDEN=1")


def test_no_method_got_looser(computed, golden) -> None:
    looser = []
    for key, now in computed.items():
        ref = golden.get(key)
        if ref is None:
            continue
        assert now["status"] == "ok" and now["kind"] == ref["kind"], key
        assert now["certified"] or not ref["certified"], f"{key} lost its certificate"
        v, g = now["value"], ref["value"]
        if now["kind"] in ("upper", "exact") and v > g * (1 + LOOSER_RTOL):
            looser.append(f"{key}: {v:.9g} > golden {g:.9g}")
        if now["kind"] == "lower" and v < g * (1 - LOOSER_RTOL):
            looser.append(f"{key}: {v:.9g} < golden {g:.9g}")
        if now["kind"] == "exact" and abs(v - g) > EXACT_RTOL * g:
            looser.append(f"{key}: exact value moved {g:.9g} -> {v:.9g}")
    assert not looser, "\n".join(looser)


def test_no_certified_bound_crosses_another(computed) -> None:
    by: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for key, r in computed.items():
        name, norm, method = key.split("|")
        if r["certified"] and r["status"] == "ok":
            by.setdefault((name, norm), []).append((method, r))
    crossings = []
    for (name, norm), rows in by.items():
        lows = [(m, r["value"]) for m, r in rows if r["kind"] in ("lower", "exact")]
        highs = [(m, r["value"]) for m, r in rows if r["kind"] in ("upper", "exact")]
        for lm, lv in lows:
            for hm, hv in highs:
                if lm != hm and lv > hv * (1 + CROSS_RTOL):
                    crossings.append(f"{name} l{norm}: {lm} {lv:.9g} > {hm} {hv:.9g}")
    assert not crossings, "\n".join(crossings)
