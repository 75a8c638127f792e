"""Which solvers are installed and usable here, found lazily and cached.

Nothing native is imported when this module is imported: `installed()` asks cvxpy (which
imports each solver's package on first call) and `mosek_licensed()` checks MOSEK's licence
once. MOSEK is listed by cvxpy even without a licence, and a solve then raises `mosek.Error`
(licence codes 1000-1028), which is not a cvxpy SolverError: such a MOSEK is treated as
absent, silently.

Default SDP choice, by the shape of the LMI (side N after first-layer compression, number
of hidden layers; the measurements are in docs/lipsdp.md): CVXOPT's interior-point solver
with the LMI's structure (GPL-3.0, a regular dependency), except for wide LMIs of shallow
nets or with few multipliers, very wide ones, and when a torch device is given, which go
to the first-order eigenvalue optimisation (`FIRST_ORDER`, torch only) first; see
`first_order_first`. Then, as
fallbacks when the first choice fails: MOSEK when licensed, SDPA when installed, SCS at
tight tolerance (every answer is certified afterwards), and Clarabel, which factors a dense
KKT block per PSD cone and so runs in the calling process only for small LMIs. The chordal
decomposition (many small cones and free overlap matrices) goes to SCS first: an
interior-point method's Schur complement grows with the square of the overlap variables.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Iterator
from typing import Any

from ..errors import SolverUnavailableError

log = logging.getLogger(__name__)

SDP_SOLVERS = ("CVXOPT", "MOSEK", "SDPA", "SCS", "CLARABEL")  # preference order
# The first-order eigenvalue method (solvers/lipsdp_eig.py): torch only, always usable.
FIRST_ORDER = "EIG"
# Measured crossover (docs/lipsdp.md): the structured interior-point solve costs O(N^3) per
# iteration on the LMI side N, the first-order method O(sum n_k^3) per step but converges
# to the optimum with one multiplier per neuron only on shallow nets, and with a few
# multipliers (one per layer) on deep ones too. LMIs wider than IPM_MAX_DIM with at most
# FIRST_ORDER_MAX_HIDDEN hidden layers or at most FEW_VARIABLES multipliers, and every LMI
# wider than IPM_LIMIT_DIM, go to the first-order method first.
IPM_MAX_DIM = 400
FIRST_ORDER_MAX_HIDDEN = 2
FEW_VARIABLES = 32
IPM_LIMIT_DIM = 1200
# The chordal decomposition's preference order.
CHORDAL_SOLVERS = ("SCS", "MOSEK", "CVXOPT", "SDPA", "CLARABEL")
MIP_SOLVERS = ("SCIP", "HIGHS", "GUROBI")  # gurobipy's pip licence is size-capped: opt-in
# The MIP solver's relative and absolute optimality gaps.
MIP_REL_GAP = 1e-8
MIP_ABS_GAP = 1e-10
# Time-limit option of each cvxpy MIP solver: (keyword, key inside it or None).
MIP_TIME_OPTIONS = {"HIGHS": ("time_limit", None), "SCIP": ("scip_params", "limits/time"),
                    "SCIPY": ("scipy_options", "time_limit"), "GUROBI": ("TimeLimit", None),
                    "CBC": ("maximumSeconds", None),
                    "MOSEK": ("mosek_params", "MSK_DPAR_MIO_MAX_TIME"),
                    "CPLEX": ("cplex_params", "timelimit"), "COPT": ("TimeLimit", None),
                    "XPRESS": ("maxtime", None)}
# Clarabel allocated ~10 GB and aborted the process (SIGABRT) on a 320x320 LMI and took
# 53 s on a 110x110 one; LMIs up to this side are solved in-process, larger ones in a child.
CLARABEL_INPROCESS_MAX_DIM = 80
# MOSEK licence failures carry response codes in this range (err_license_*).
MOSEK_LICENCE_CODES = range(1000, 1029)
# Default SCS tolerance: at SCS's default (1e-4) the value can lie below the SDP optimum.
SCS_EPS = 1e-7


@functools.cache
def installed() -> tuple[str, ...]:
    """Solver names that cvxpy finds installed (upper case, as cvxpy spells them)."""
    if importlib.util.find_spec("cvxpy") is None:
        return ()
    import cvxpy

    return tuple(sorted(str(s).upper() for s in cvxpy.installed_solvers()))


@functools.cache
def mosek_licensed() -> bool:
    """Whether MOSEK is installed *and* can check out a licence (checked once)."""
    if "MOSEK" not in installed():
        return False
    try:
        import mosek

        with mosek.Env() as env:
            env.checkoutlicense(mosek.feature.pts)
    except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
        log.debug("MOSEK not usable: %s", exc)
        return False
    return True


def usable(name: str) -> bool:
    """Installed, and (for MOSEK) licensed."""
    name = name.upper()
    if name == FIRST_ORDER:
        return True
    if name in _BROKEN:
        return False
    if name == "CVXOPT" and cvxopt_installed():
        return True
    if name == "MOSEK":
        return mosek_licensed()
    return name in installed()


def resolve(name: str) -> str:
    """The cvxpy name of a forced solver; SolverUnavailableError when it cannot be used."""
    key = str(name).strip().upper()
    if key == FIRST_ORDER or (key == "CVXOPT" and usable(key)):
        return key
    if key not in installed():
        raise SolverUnavailableError(
            f"solver {name!r} is not installed; installed: {', '.join(installed()) or 'none'}")
    if not usable(key):
        raise SolverUnavailableError(
            f"solver {name!r} is installed but not usable here (no licence); usable: "
            f"{', '.join(s for s in installed() if usable(s)) or 'none'}")
    return key


def sdp_candidates(forced: str | None = None, *, lmi_dim: int | None = None,
                   hidden_layers: int | None = None, variables: int | None = None,
                   chordal: bool = False, device: str | None = None) -> list[str]:
    """SDP solvers to try, in order: the forced one alone, else the usable defaults for an
    LMI of side `lmi_dim` over `hidden_layers` hidden layers with `variables` multipliers
    (see the module docstring)."""
    return list(iter_sdp_candidates(forced, lmi_dim=lmi_dim, hidden_layers=hidden_layers,
                                    variables=variables, chordal=chordal, device=device))


def first_order_first(lmi_dim: int | None, hidden_layers: int | None,
                      variables: int | None = None, device: str | None = None) -> bool:
    """Whether the first-order method is the default for this shape (or device)."""
    if device is not None:
        return True
    if lmi_dim is None:
        return False
    if lmi_dim > IPM_LIMIT_DIM:
        return True
    shallow = hidden_layers is not None and hidden_layers <= FIRST_ORDER_MAX_HIDDEN
    few = variables is not None and variables <= FEW_VARIABLES
    return lmi_dim > IPM_MAX_DIM and (shallow or few)


def iter_sdp_candidates(forced: str | None = None, *, lmi_dim: int | None = None,
                        hidden_layers: int | None = None, variables: int | None = None,
                        chordal: bool = False, device: str | None = None) -> Iterator[str]:
    """`sdp_candidates`, lazily: the structured CVXOPT solve and the first-order method
    need no cvxpy, so cvxpy (about a second to import) is asked about the others only when
    those fail."""
    if forced is not None:
        yield resolve(forced)
        return
    if chordal:
        yield from (s for s in CHORDAL_SOLVERS if usable(s))
        return
    first = first_order_first(lmi_dim, hidden_layers, variables, device)
    if first:
        yield FIRST_ORDER
    if usable("CVXOPT"):
        yield "CVXOPT"
    yield from (s for s in SDP_SOLVERS if s != "CVXOPT" and usable(s))
    if not first:
        yield FIRST_ORDER


@functools.cache
def cvxopt_installed() -> bool:
    """Whether CVXOPT can be imported (the structured solve needs CVXOPT, not cvxpy)."""
    return importlib.util.find_spec("cvxopt") is not None


def mip_solver(forced: str | None = None) -> str:
    """The MIP solver to use: the forced one (installed, usable and mixed-integer capable),
    else SCIP when installed, else HiGHS (Gurobi only when forced: its pip licence caps
    model size)."""
    from cvxpy.reductions.solvers.defines import INSTALLED_MI_SOLVERS

    mip_capable = sorted(str(s).upper() for s in INSTALLED_MI_SOLVERS)
    ok = [s for s in mip_capable if usable(s)]
    if forced is not None:
        name = str(forced).strip().upper()
        if name not in mip_capable:
            raise SolverUnavailableError(
                f"mip: solver {forced!r} is not an installed mixed-integer solver; installed: "
                f"{', '.join(mip_capable) or 'none'}")
        if name not in ok:
            raise SolverUnavailableError(
                f"mip: solver {forced!r} is installed but not usable here (no licence); "
                f"usable: {', '.join(ok) or 'none'}")
        return name
    for name in MIP_SOLVERS[:2]:
        if name in ok:
            return name
    raise SolverUnavailableError(f"mip: neither SCIP nor HiGHS is usable; installed mixed-"
                                 f"integer solvers: {', '.join(mip_capable) or 'none'}")


def mip_options(name: str, time_limit: float | None = None) -> dict[str, Any]:
    """Keyword arguments for `Problem.solve` with this MIP solver: gaps and time limit."""
    opts: dict[str, Any] = {}
    if name == "HIGHS":
        # HiGHS's default feasibility tolerances: tightening them to 1e-9 made it report wrong
        # "optimal" answers on a 2-20-20-2 net over a box of half-width 3.7e3
        opts.update(mip_rel_gap=MIP_REL_GAP, mip_abs_gap=MIP_ABS_GAP)
    elif name == "SCIP":
        opts["scip_params"] = {"limits/gap": MIP_REL_GAP}
    if time_limit is not None and name in MIP_TIME_OPTIONS:
        key, sub = MIP_TIME_OPTIONS[name]
        if sub is None:
            opts[key] = float(time_limit)
        else:
            opts.setdefault(key, {})[sub] = float(time_limit)
    return opts


def clarabel_in_process(lmi_dim: int) -> bool:
    """Whether an LMI of this side is small enough to give Clarabel in this process."""
    return lmi_dim <= CLARABEL_INPROCESS_MAX_DIM


def sdp_options(name: str, *, eps: float | None = None, time_limit: float | None = None
                ) -> dict[str, Any]:
    """Keyword arguments for `Problem.solve` with this solver: tolerance and time limit."""
    name = name.upper()
    opts: dict[str, Any] = {}
    if name == "SCS":
        e = SCS_EPS if eps is None else float(eps)
        opts.update(eps_abs=e, eps_rel=e, max_iters=1_000_000)
        if time_limit is not None:
            opts["time_limit_secs"] = float(time_limit)
    elif name == "CLARABEL":
        if eps is not None:
            opts.update(tol_gap_abs=float(eps), tol_gap_rel=float(eps), tol_feas=float(eps))
        if time_limit is not None:
            opts["time_limit"] = float(time_limit)
    elif name == "CVXOPT":  # through cvxpy (the chordal program); the structured solve has
        if eps is not None:  # its own options (solvers/lipsdp_cvxopt.py)
            opts.update(reltol=float(eps), abstol=float(eps) * 1e-2)
    elif name == "MOSEK":
        params: dict[str, Any] = {}
        if eps is not None:
            params["MSK_DPAR_INTPNT_CO_TOL_REL_GAP"] = float(eps)
        if time_limit is not None:
            params["MSK_DPAR_OPTIMIZER_MAX_TIME"] = float(time_limit)
        if params:
            opts["mosek_params"] = params
    return opts


def is_licence_error(exc: BaseException) -> bool:
    """A MOSEK licence failure (raised as mosek.Error, not as a cvxpy SolverError)."""
    if type(exc).__module__.split(".")[0] != "mosek":
        return False
    code = getattr(exc, "errno", None)
    try:
        return int(code) in MOSEK_LICENCE_CODES  # a mosek.rescode converts to its number
    except (TypeError, ValueError):
        pass
    text = str(exc).lower()
    return "licen" in text or any(f"({c})" in text for c in MOSEK_LICENCE_CODES)


def mark_unusable(name: str) -> None:
    """Treat a solver as absent for the rest of this process (e.g. MOSEK whose licence
    check passed but whose solve then failed for want of a licence)."""
    _BROKEN.add(name.upper())


_BROKEN: set[str] = set()
