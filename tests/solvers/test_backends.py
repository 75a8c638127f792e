"""Solver discovery: lazy imports, the MOSEK licence check, forced solvers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lipopt_suite.errors import SolverUnavailableError
from lipopt_suite.solvers import backends


def test_import_loads_no_native_solver():
    code = ("import sys, lipopt_suite.solvers.backends, lipopt_suite.solvers.lipsdp, "
            "lipopt_suite.solvers.chordal, lipopt_suite.core.eclipse, lipopt_suite.core.liplt,"
            "lipopt_suite.solvers.lipsdp_cvxopt, lipopt_suite.solvers.lipsdp_eig,"
            "lipopt_suite.numerics.lmi;"
            "print(sorted(m for m in ('cvxpy', 'mosek', 'scs', 'clarabel', 'networkx', "
            "'cvxopt', 'sdpap') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_default_order_without_mosek():
    assert "SCS" in backends.installed()
    candidates = backends.sdp_candidates(lmi_dim=100, hidden_layers=3)
    if backends.cvxopt_installed():
        assert candidates[0] == "CVXOPT"
    if not backends.mosek_licensed():
        assert "MOSEK" not in candidates
    assert "SCS" in candidates and candidates[-1] == backends.FIRST_ORDER


def test_first_order_first_by_shape():
    ipm, wide, limit = backends.IPM_MAX_DIM, backends.IPM_MAX_DIM + 1, backends.IPM_LIMIT_DIM
    shallow, deep = backends.FIRST_ORDER_MAX_HIDDEN, backends.FIRST_ORDER_MAX_HIDDEN + 1
    assert not backends.first_order_first(ipm, shallow)
    assert backends.first_order_first(wide, shallow)
    assert not backends.first_order_first(wide, deep)
    assert not backends.first_order_first(wide, deep, backends.FEW_VARIABLES + 1)
    assert backends.first_order_first(wide, deep, backends.FEW_VARIABLES)
    assert not backends.first_order_first(ipm, deep, 3)
    assert backends.first_order_first(limit + 1, deep)
    assert backends.first_order_first(10, deep, device="cuda")
    order = backends.sdp_candidates(lmi_dim=wide, hidden_layers=1)
    assert order[0] == backends.FIRST_ORDER and order.count(backends.FIRST_ORDER) == 1


def test_chordal_prefers_scs():
    assert backends.sdp_candidates(chordal=True)[0] == "SCS"
    assert backends.FIRST_ORDER not in backends.sdp_candidates(chordal=True)


def test_missing_cvxopt_falls_back(monkeypatch):
    monkeypatch.setattr(backends, "installed", lambda: ("CLARABEL", "SCS"))
    monkeypatch.setattr(backends, "cvxopt_installed", lambda: False)
    assert backends.sdp_candidates(lmi_dim=50, hidden_layers=2) == [
        "SCS", "CLARABEL", backends.FIRST_ORDER]
    with pytest.raises(SolverUnavailableError, match="not installed"):
        backends.resolve("cvxopt")


def test_licence_less_mosek_is_skipped(monkeypatch):
    # MOSEK listed by cvxpy but without a licence: never a default, refused when forced
    monkeypatch.setattr(backends, "installed", lambda: ("CLARABEL", "CVXOPT", "MOSEK", "SCS"))
    monkeypatch.setattr(backends, "mosek_licensed", lambda: False)
    assert "MOSEK" not in backends.sdp_candidates(lmi_dim=50, hidden_layers=2)
    with pytest.raises(SolverUnavailableError, match="no licence"):
        backends.resolve("mosek")
    monkeypatch.setattr(backends, "mosek_licensed", lambda: True)
    monkeypatch.setattr(backends, "_BROKEN", set())
    assert backends.sdp_candidates(lmi_dim=50, hidden_layers=2)[:2] == ["CVXOPT", "MOSEK"]


def test_forced_solver_names():
    assert backends.resolve("scs") == "SCS"
    with pytest.raises(SolverUnavailableError, match="not installed; installed: .*SCS"):
        backends.resolve("nonexistent")
    assert backends.sdp_candidates("Scs") == ["SCS"]
    assert backends.resolve("eig") == backends.FIRST_ORDER
    if backends.cvxopt_installed():
        assert backends.resolve("cvxopt") == "CVXOPT"


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
    assert backends.sdp_options("CVXOPT", eps=1e-6)["reltol"] == 1e-6


def test_clarabel_size_rule():
    assert backends.clarabel_in_process(backends.CLARABEL_INPROCESS_MAX_DIM)
    assert not backends.clarabel_in_process(320)


def test_mip_solver_choice_and_options():
    import cvxpy

    default = backends.mip_solver()
    assert default in ("SCIP", "HIGHS")
    if "SCIP" not in backends.installed():
        assert default == "HIGHS"
    assert backends.mip_solver("highs") == "HIGHS"
    with pytest.raises(SolverUnavailableError, match="not an installed mixed-integer"):
        backends.mip_solver("CLARABEL")  # installed, but not a MIP solver
    opts = backends.mip_options("HIGHS", 7.0)
    assert opts["time_limit"] == 7.0 and opts["mip_rel_gap"] == backends.MIP_REL_GAP
    assert backends.mip_options("SCIP", 3.0)["scip_params"] == {
        "limits/gap": backends.MIP_REL_GAP, "limits/time": 3.0}
    assert "HIGHS" in (str(s).upper() for s in cvxpy.installed_solvers())
