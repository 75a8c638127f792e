"""Solver discovery: lazy imports, the MOSEK licence check, forced solvers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lipopt_suite.errors import SolverUnavailableError
from lipopt_suite.solvers import backends


def test_import_loads_no_native_solver():
    code = ("import sys, lipopt_suite.solvers.backends, lipopt_suite.solvers.lipsdp, "
            "lipopt_suite.solvers.chordal, lipopt_suite.core.eclipse, lipopt_suite.core.liplt;"
            "print(sorted(m for m in ('cvxpy', 'mosek', 'scs', 'clarabel', 'networkx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_scs_is_installed_and_first_without_mosek():
    assert "SCS" in backends.installed()
    candidates = backends.sdp_candidates()
    if not backends.mosek_licensed():
        assert candidates[0] == "SCS" and "MOSEK" not in candidates


def test_forced_solver_names():
    assert backends.resolve("scs") == "SCS"
    with pytest.raises(SolverUnavailableError, match="not installed; installed: .*SCS"):
        backends.resolve("nonexistent")
    assert backends.sdp_candidates("Scs") == ["SCS"]


@pytest.mark.skipif("MOSEK" not in backends.installed(), reason="mosek not installed")
def test_mosek_licence_check_is_cached_and_honest():
    backends.mosek_licensed.cache_clear()
    first = backends.mosek_licensed()
    second = backends.mosek_licensed()
    assert first == second
    assert backends.mosek_licensed.cache_info().hits >= 1
    if not first:
        with pytest.raises(SolverUnavailableError, match="no licence"):
            backends.resolve("mosek")


@pytest.mark.skipif("MOSEK" not in backends.installed(), reason="mosek not installed")
def test_licence_errors_are_recognised():
    import mosek

    try:
        with mosek.Env() as env:
            env.checkoutlicense(mosek.feature.pts)
    except mosek.Error as exc:
        assert backends.is_licence_error(exc)
    else:
        pytest.skip("MOSEK is licensed here")
    assert not backends.is_licence_error(ValueError("licence"))


def test_marking_a_solver_unusable(monkeypatch):
    monkeypatch.setattr(backends, "_BROKEN", set())
    backends.mark_unusable("scs")
    assert not backends.usable("SCS")
    assert "SCS" not in backends.sdp_candidates()


def test_solver_options():
    scs = backends.sdp_options("SCS", time_limit=5)
    assert scs["eps_abs"] == scs["eps_rel"] == backends.SCS_EPS
    assert scs["time_limit_secs"] == 5.0
    assert backends.sdp_options("CLARABEL", eps=1e-6, time_limit=3) == {
        "tol_gap_abs": 1e-6, "tol_gap_rel": 1e-6, "tol_feas": 1e-6, "time_limit": 3.0}
    assert backends.sdp_options("MOSEK", time_limit=2)["mosek_params"] == {
        "MSK_DPAR_OPTIMIZER_MAX_TIME": 2.0}


def test_clarabel_size_rule():
    assert backends.clarabel_in_process(backends.CLARABEL_INPROCESS_MAX_DIM)
    assert not backends.clarabel_in_process(320)


def test_mip_candidates():
    assert "HIGHS" in backends.mip_candidates() or "HIGHS" not in backends.installed()
