"""The `regularisers` family and preset: the digits MLP trained under each regulariser at
two or three strengths (harness/trainer.py), then certified.

`REGULARISER_PROBLEMS` names the shipped nets (problems/regularisers/NAME.npz, with the run
as NAME.json beside it). After the preset's jobs, `write_margins` stores for every net what
training reported (test accuracy, the regulariser's own value of the constant) and a
certified lower bound on each test point's margin f_y(x) - max_{j != y} f_j(x) (the float64
forward pass with its proven error bound, core/lower.py `eval_error_bound`). The report
(`regularisers_files`) then sets beside them the tightest certified upper bound, the best
certified lower bound and the exact value of the records, and the certified l2 radius of
each test point, margin / (sqrt(2) L) with L the tightest certified upper bound: no
perturbation of smaller l2 norm changes the predicted class (Tsuzuku, Sato & Sugiyama,
NeurIPS 2018; each logit difference is sqrt(2) L-Lipschitz).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..numerics.rounding import SQRT2_UP, down, up
from .regularisers import REGULARISERS
from .tables import fmt, md_table

# strengths of each regulariser (budget K, clip value or penalty weight, see
# harness/regularisers.py), chosen so that accuracy and constant both move
STRENGTHS: dict[str, tuple[float, ...]] = {
    "none": (0.0,), "weight-decay": (1e-3, 1e-2), "clipping": (0.1, 0.3),
    "spectral": (1.0, 3.0, 10.0), "projection-l2": (1.0, 3.0, 10.0),
    "projection-linf": (10.0, 30.0, 100.0), "projection-l1": (3.0, 10.0, 30.0),
    "bjorck": (1.0, 3.0, 10.0), "gradient-penalty": (0.1, 1.0, 10.0),
    "lipschitz-penalty": (0.1, 1.0, 10.0), "adversarial-lipschitz": (0.1, 1.0, 10.0),
}
EPOCHS = 30
FAMILY = "regularisers"
MARGINS_FILE = "regularisers.json"
RADII = (0.1, 0.3)  # shares of test points certified at these l2 radii
# as the report's VIOLATION_RTOL: independent certified values that coincide mathematically
# may differ by a few ulps
VIOLATION_RTOL = 1e-6


def problem_name(regulariser: str, strength: float) -> str:
    return f"reg_{regulariser.replace('-', '_')}_{f'{strength:g}'.replace('.', 'p')}"


REGULARISER_PROBLEMS: dict[str, tuple[str, dict[str, Any]]] = {
    problem_name(r, s): (f"{FAMILY}/{problem_name(r, s)}.npz",
                         {"regulariser": r, "strength": s, "epochs": EPOCHS, "seed": 0})
    for r, strengths in STRENGTHS.items() for s in strengths
}


def generate(params: dict[str, Any]) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """The network, extras and training record of one REGULARISER_PROBLEMS entry."""
    from .trainer import train

    run = train(params["regulariser"], params["strength"], epochs=params["epochs"],
                seed=params.get("seed", 0), progress=False)
    return run.net, run.extras, run.info


# ------------------------------------------------------------------- after the jobs
def certified_margins(net: Any, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For each row: a lower bound on f_y(x) - max_{j != y} f_j(x) in exact arithmetic
    (negative where the class is not predicted)."""
    from ..core.lower import eval_error_bound

    Z = net(X).reshape(len(X), -1)
    E = eval_error_bound(net, X).reshape(len(X), -1)
    idx = np.arange(len(X))
    own = Z[idx, y] - E[idx, y]
    others = (Z + E).copy()
    others[idx, y] = -np.inf
    # the subtraction rounds: shift down by one rounding of the larger magnitude
    raw = own - others.max(axis=1)
    scale = np.abs(own) + np.abs(others.max(axis=1))
    return raw - 4 * np.finfo(np.float64).eps * scale


def write_margins(out: Path, root: Path | str = "problems") -> Path:
    """out/regularisers.json: per net of the family in the run (out/problems.json, files
    under ROOT), its training record and the certified margins of its test points."""
    from ..errors import InputError
    from ..io import load_problem

    problems = json.loads((Path(out) / "problems.json").read_text())
    data: dict[str, Any] = {}
    for name, p in problems.items():
        if p.get("family") != FAMILY:
            continue
        path = Path(root) / p["file"]
        net, extras = load_problem(path)
        with np.load(path, allow_pickle=False) as z:
            if "y" not in z.files or "X" not in extras:
                raise InputError(f"{path}: the regularisers family needs test data X and y")
            labels = np.asarray(z["y"], dtype=np.float64).astype(np.int64)
        info_path = path.with_suffix(".json")
        info = json.loads(info_path.read_text()) if info_path.exists() else {}
        params = p.get("params") or {}
        data[name] = {
            "regulariser": info.get("regulariser", params.get("regulariser")),
            "strength": info.get("strength", params.get("strength")),
            "test_accuracy": info.get("test_accuracy"), "estimate": info.get("estimate"),
            "design_bound": info.get("design_bound"), "design_norm": info.get("design_norm"),
            "margins": [float(m) for m in certified_margins(net, extras["X"], labels)]}
    path = Path(out) / MARGINS_FILE
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


# ----------------------------------------------------------------------------- table
def _bounds(groups: Sequence[Any], problem: str, norm: str, pseudo: str
            ) -> tuple[Any, Any, Any, list[str]]:
    """(tightest certified upper, best certified lower, exact) rows of a problem's global
    group in `norm` (exact values count on both sides), and the methods whose certified
    upper or exact value a certified lower bound contradicts: those are left out (the report
    flags them as violations), so that the radii rest on bounds nothing contradicts."""
    g = next((g for g in groups if g.problem == problem and g.norm == norm
              and g.radius is None), None)
    if g is None:
        return None, None, None, []
    rows = [r for r in g.rows if r.sound and r.method != pseudo and r.quantity == "global"]
    top_lower = max((r.value for r in rows if r.kind == "lower"), default=-math.inf)
    wrong = [r for r in rows if r.kind in ("upper", "exact")
             and top_lower > r.value * (1 + VIOLATION_RTOL)]
    rows = [r for r in rows if r not in wrong]
    ups = [r for r in rows if r.kind in ("upper", "exact")]
    los = [r for r in rows if r.kind in ("lower", "exact")]
    ex = [r for r in rows if r.kind == "exact"]
    return (min(ups, key=lambda r: r.value) if ups else None,
            max(los, key=lambda r: r.value) if los else None,
            max(ex, key=lambda r: r.value) if ex else None, sorted({r.method for r in wrong}))


def certified_radii(margins: Sequence[float], L: float) -> np.ndarray:
    """margin / (sqrt(2) L) rounded down, 0 where the margin is not positive."""
    m = np.asarray(margins, dtype=np.float64)
    denom = up(SQRT2_UP * L)
    return np.array([down(down(v / denom) * (1 - 4 * np.finfo(float).eps)) if v > 0 else 0.0
                     for v in m])


def _verdict(est: dict[str, Any] | None, up_row: Any, lo_row: Any) -> str:
    """Where the regulariser's own value sits against the certified interval."""
    if not est or est.get("value") is None:
        return "—"
    v = float(est["value"])
    if est.get("guaranteed"):
        return "guaranteed upper"
    if lo_row is not None and v < lo_row.value:
        return f"below the constant (lower / own = {fmt(lo_row.value / v, 3)})"
    if up_row is not None and v >= up_row.value:
        return "a valid upper bound"
    return "inside the certified interval"


def rows(a: Any, data: dict[str, Any], pseudo: str) -> list[dict[str, Any]]:
    """One dict per net: training, certified bounds (l2; the design norm too) and radii."""
    order = list(REGULARISERS)
    out = []
    for name, d in sorted(data.items(), key=lambda kv: (
            order.index(kv[1]["regulariser"]) if kv[1]["regulariser"] in order else 99,
            kv[1]["strength"] or 0.0)):
        up_row, lo_row, ex_row, wrong = _bounds(a.groups, name, "2", pseudo)
        est = d.get("estimate") or {}
        norm = est.get("norm", "2")
        e_up, e_lo = (up_row, lo_row) if norm == "2" else _bounds(
            a.groups, name, norm, pseudo)[:2]
        row: dict[str, Any] = {
            "problem": name, "regulariser": d["regulariser"], "strength": d["strength"],
            "test_accuracy": d.get("test_accuracy"), "estimate": est.get("value"),
            "estimate_norm": norm, "estimate_guaranteed": bool(est.get("guaranteed")),
            "design_bound": d.get("design_bound"), "design_norm": d.get("design_norm"),
            "upper": up_row.value if up_row else None,
            "upper_method": up_row.method if up_row else None,
            "lower": lo_row.value if lo_row else None,
            "lower_method": lo_row.method if lo_row else None,
            "exact": ex_row.value if ex_row else None, "contradicted": wrong,
            "verdict": _verdict(est, e_up, e_lo)}
        if up_row is not None and math.isfinite(up_row.value) and up_row.value > 0:
            r = certified_radii(d["margins"], up_row.value)
            row.update(radius_mean=float(r.mean()), radius_median=float(np.median(r)),
                       **{f"certified_{t:g}": float(np.mean(r >= t)) for t in RADII})
        out.append(row)
    return out


def markdown(table: list[dict[str, Any]]) -> str:
    head = ["regulariser", "strength", "test acc.", "own value", "own value is",
            "certified upper", "certified lower", "exact", "upper / lower", "radius mean",
            "radius median"] + [f"certified at {t:g}" for t in RADII]
    body = []
    for r in table:
        own = fmt(r["estimate"])
        if r["estimate_norm"] != "2" and r["estimate"] is not None:
            own += f" (l{r['estimate_norm']})"
        ratio = (fmt(r["upper"] / r["lower"], 4) if r["upper"] and r["lower"] else "—")
        exact = fmt(r["exact"]) + "".join(f" ({m} contradicted)" for m in r["contradicted"])
        body.append([
            r["regulariser"], fmt(r["strength"]), fmt(r["test_accuracy"], 3), own,
            r["verdict"],
            f"{fmt(r['upper'])} ({r['upper_method']})" if r["upper"] is not None else "—",
            f"{fmt(r['lower'])} ({r['lower_method']})" if r["lower"] is not None else "—",
            exact, ratio, fmt(r.get("radius_mean"), 3),
            fmt(r.get("radius_median"), 3)] + [fmt(r.get(f"certified_{t:g}"), 3)
                                               for t in RADII])
    lines = [
        "# Training for a Lipschitz budget: the regularisers side by side", "",
        f"The digits MLP 64-20-20-10 ({EPOCHS} epochs of Adam, seed 0) under each "
        "regulariser (`lipopt train`). Strength: the budget K (spectral, projection-*, "
        "bjorck), the clip value (clipping), the penalty weight (weight-decay and the "
        "penalties, target constant 1). Own value: what the regulariser itself says about "
        "the constant (budgets are guaranteed in their norm; the penalties' values are the "
        "largest penalised quantity over the training points, an estimate). Certified upper "
        "and lower bounds and the exact value (bab, where it finished) are l2, from the "
        "records; the radius of a test point is its certified margin / (sqrt(2) x certified "
        "upper), 0 when misclassified, over the 300 test images (pixels in [0, 1]). A "
        "method's upper bound or exact value that a certified lower bound exceeds is left "
        "out and named (see the violations in table.md).", ""]
    return "\n".join(lines + md_table(head, body)) + "\n"


def plot(table: list[dict[str, Any]], path: Path) -> Path | None:
    """Test accuracy against the certified constant, one marker per regulariser, and the
    Pareto front (the best accuracy at a certified constant no larger)."""
    pts = [r for r in table if r["upper"] is not None and r["test_accuracy"] is not None]
    if not pts:
        return None
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    names = list(REGULARISERS)
    markers = "osD^vP*Xh<>"
    for k, name in enumerate(names):
        mine = [r for r in pts if r["regulariser"] == name]
        if mine:
            ax.scatter([r["upper"] for r in mine], [r["test_accuracy"] for r in mine],
                       label=name, marker=markers[k % len(markers)],
                       color=colormaps["tab20"](k % 20), s=42, zorder=3)
    front, best = [], -1.0
    for r in sorted(pts, key=lambda r: r["upper"]):
        if r["test_accuracy"] > best:
            best = r["test_accuracy"]
            front.append((r["upper"], best))
    ax.step([f[0] for f in front], [f[1] for f in front], where="post", color="0.4",
            linewidth=1.2, zorder=2, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("tightest certified upper bound on L_2")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits MLP: accuracy vs certified Lipschitz constant")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path)
    return path


def regularisers_files(a: Any, out: Path, pseudo: str, *, plots: bool = True) -> list[Path]:
    """regularisers.md, regularisers_table.json and (with `plots`) regularisers.png from a
    report `Analysis` and out/regularisers.json (nothing without that file); `pseudo` names
    the report's row of guaranteed bounds, which is not a method's."""
    path = Path(out) / MARGINS_FILE
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    table = rows(a, data, pseudo)
    written = [Path(out) / "regularisers.md", Path(out) / "regularisers_table.json"]
    written[0].write_text(markdown(table))
    written[1].write_text(json.dumps(table, indent=1) + "\n")
    png = plot(table, Path(out) / "regularisers.png") if plots else None
    return written + ([png] if png else [])
