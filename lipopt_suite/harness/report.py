"""Tables, rankings and plots from a results directory's records.

Per problem, norm and domain radius (a "group"), upper bounds are listed ascending and lower
bounds descending, each with its ratio to the best certified lower (or exact) value and its
time. Across groups, each method gets a mean rank (uppers among uppers, lowers among lowers)
and the geometric mean of its ratios. Any certified lower bound (or exact value) above a
certified upper bound (or exact value) of a quantity at least as large is a violation and
is flagged at the top of table.md. The quantities are ordered anchored <= local <= global
(DESIGN.md section 1): a lower bound on the anchored constant must sit below every upper
bound of its problem, domain and norm; a lower bound on the constant over the set need not
sit below an anchored upper bound. Estimates are shown and never flagged.

Writes table.md, summary.md (one line per problem: tightest upper, exact, best lower),
table.csv, table.json, table.tex, ranking.md, PNG plots (bound vs depth per series, bound vs
time, bound vs radius) and, for the scaman2018 family, scaman2018.md with the published
table beside ours.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .cnn_table import ALEXNET_FILE, cnn_markdown
from .problems import DESIGN_METHODS, SCAMAN_COLUMNS, SCAMAN_LAYERS, SERIES_AXIS
from .store import RECORDS, Store
from .tables import fmt, md_table

QUANTITY_ORDER = {"anchored": 0, "local": 1, "global": 2}
# Two certified values computed independently in float64 may differ by a few ulps where
# they coincide mathematically (an exact value equal to a product bound); a crossing is
# flagged only beyond this relative margin.
VIOLATION_RTOL = 1e-6
# values this close (relative) count as equal when ranking: the same constant computed by
# two exact methods differs by round-off only
TIE_RTOL = 1e-9
# a run's bound counts as the reference's own when within this relative distance (seeded
# methods repeat to round-off; time-limited ones may move)
REFERENCE_RTOL = 1e-6
USABLE_STATUS = ("ok", "timeout", "inaccurate")
REFUSALS = ("InputError", "UnsupportedError", "SolverUnavailableError")
KNOWN = "(guaranteed)"  # pseudo-method for a bound guaranteed by construction
SCAMAN_HEADERS = ("Frob.", "AutoLip", "SeqLip", "Greedy SL", "Data", "Annealing",
                  "Grid Search")


# ------------------------------------------------------------------------------- model
@dataclass
class Row:
    method: str
    kind: str
    quantity: str
    value: float | None
    certified: bool
    status: str
    seconds: float
    radius: float | None
    key: str
    message: str = ""
    error_type: str = ""
    ratio: float | None = None
    rank: int | None = None
    published: float | None = None
    # an anytime exact method stopped early (bab): its certified lower bound, and the gap
    # upper / lower - 1 it had proven when it stopped
    lower: float | None = None
    gap: float | None = None

    @property
    def usable(self) -> bool:
        return (self.value is not None and math.isfinite(self.value)
                and self.status in USABLE_STATUS)

    @property
    def refused(self) -> bool:
        """The method declined this input (a norm, size or layer it does not handle)."""
        return self.status == "error" and self.error_type in REFUSALS

    @property
    def sound(self) -> bool:
        """Takes part in violation checks: certified, usable, not an estimate."""
        return self.usable and self.certified and self.kind in ("upper", "lower", "exact")


@dataclass
class Group:
    problem: str
    norm: str
    radius: float | None
    family: str = ""
    series: str | None = None
    x: float | None = None
    rows: list[Row] = field(default_factory=list)

    @property
    def label(self) -> str:
        where = "global" if self.radius is None else f"r={self.radius:g}"
        return f"{self.problem} (l{self.norm}, {where})"


@dataclass(frozen=True)
class Violation:
    group: str
    low: Row
    high: Row

    def text(self) -> str:
        return (f"{self.group}: {self.low.kind} bound {self.low.method} = "
                f"{fmt(self.low.value)} ({self.low.quantity}) exceeds {self.high.kind} "
                f"{self.high.method} = {fmt(self.high.value)} ({self.high.quantity})")


@dataclass
class Analysis:
    groups: list[Group]
    violations: list[Violation]
    ranking: dict[str, dict[str, Any]]
    methods: list[str]


def _value(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        return float(v)  # "inf" / "-inf"
    return float(v)


def _row(rec: dict[str, Any], published: dict[str, float]) -> Row:
    return Row(method=rec["method"], kind=rec.get("kind", "estimate"),
               quantity=rec.get("quantity", "global"), value=_value(rec.get("value")),
               certified=bool(rec.get("certified")), status=rec.get("status", "error"),
               seconds=float(rec.get("seconds") or rec.get("wall") or 0.0),
               radius=rec.get("radius"), key=rec["key"],
               message=str((rec.get("details") or {}).get("message", ""))[:200],
               error_type=str((rec.get("details") or {}).get("error_type", "")),
               published=published.get(rec["method"]), **_interval(rec))


def _interval(rec: dict[str, Any]) -> dict[str, float]:
    """The proven interval of an exact method that stopped with an upper bound."""
    d = rec.get("details") or {}
    if rec.get("kind") != "upper" or not isinstance(d, dict):
        return {}
    low, gap = d.get("lower"), d.get("gap")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
               for v in (low, gap)):
        return {}
    return {"lower": float(low), "gap": float(gap)}


def _gap(r: Row) -> str:
    return "" if r.gap is None else f" [>= {fmt(r.lower)}, gap {fmt(100 * r.gap, 3)} %]"


def _reference(rows: Sequence[Row], quantity: str) -> float | None:
    """Best certified value below the constant of `quantity`: an exact value of that
    quantity, else the largest certified lower bound on a quantity no larger."""
    q = QUANTITY_ORDER[quantity]
    exact = [r.value for r in rows if r.sound and r.kind == "exact" and r.quantity == quantity]
    if exact:
        return max(exact)
    lows = [r.value for r in rows if r.sound and r.kind in ("lower", "exact")
            and QUANTITY_ORDER[r.quantity] <= q]
    return max(lows) if lows else None


def _violations(group: Group) -> list[Violation]:
    out = []
    for low in group.rows:
        if not (low.sound and low.kind in ("lower", "exact")):
            continue
        for high in group.rows:
            if high is low or not (high.sound and high.kind in ("upper", "exact")):
                continue
            if QUANTITY_ORDER[low.quantity] > QUANTITY_ORDER[high.quantity]:
                continue
            if low.value > high.value * (1 + VIOLATION_RTOL) + 1e-300:
                out.append(Violation(group.label, low, high))
    return out


def analyse(records: Sequence[dict[str, Any]], problems: dict[str, Any] | None = None
            ) -> Analysis:
    """Group records, compute ratios, ranks, violations and the per-method ranking."""
    problems = problems or {}
    groups: dict[tuple[str, str, float | None], Group] = {}
    globals_: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rec in records:
        key = (rec["problem"], rec["norm"], rec.get("radius"))
        meta = problems.get(rec["problem"], {})
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(rec["problem"], rec["norm"], rec.get("radius"),
                                    rec.get("family", meta.get("family", "")),
                                    rec.get("series", meta.get("series")),
                                    rec.get("x", meta.get("x")))
        g.rows.append(_row(rec, meta.get("published", {}) if key[2] is None else {}))
        if rec.get("radius") is None:
            globals_.setdefault(key[:2], []).append(rec)
    for (problem, norm, radius), g in groups.items():
        meta = problems.get(problem, {})
        if radius is not None:
            # global upper bounds and exact values also bound the local constants
            for rec in globals_.get((problem, norm), []):
                if rec.get("kind") in ("upper", "exact", "estimate"):
                    g.rows.append(_row(rec, {}))
        known = (meta.get("known_upper") or {}).get(norm)
        if known is not None:
            g.rows.append(Row(KNOWN, "upper", "global", float(known), True, "ok", 0.0, None,
                              f"{problem}|{KNOWN}|{norm}"))
    ordered = sorted(groups.values(), key=lambda g: (
        g.family, g.series or "", g.x if g.x is not None else 0.0, g.problem, g.norm,
        -1.0 if g.radius is None else g.radius))
    violations: list[Violation] = []
    seen: set[tuple[str, str]] = set()
    for g in ordered:
        _rank_group(g)
        for v in _violations(g):
            if (v.low.key, v.high.key) not in seen:
                seen.add((v.low.key, v.high.key))
                violations.append(v)
    methods = _method_order({r.method for g in ordered for r in g.rows if r.method != KNOWN})
    return Analysis(ordered, violations, _ranking(ordered, methods), methods)


def _rank_group(g: Group) -> None:
    for r in g.rows:
        if r.usable:
            ref = _reference(g.rows, r.quantity)
            r.ratio = None if not ref else r.value / ref
    uppers = sorted((r for r in g.rows if r.usable and r.kind in ("upper", "exact")
                     and r.method != KNOWN), key=lambda r: r.value)
    lowers = sorted((r for r in g.rows if r.usable and r.kind == "lower"),
                    key=lambda r: -r.value)
    for side in (uppers, lowers):
        for i, r in enumerate(side):
            prev = side[i - 1] if i else None
            tie = prev is not None and abs(r.value - prev.value) <= TIE_RTOL * abs(prev.value)
            r.rank = prev.rank if tie else i + 1  # equal values share a rank
    order = {"upper": 0, "exact": 1, "lower": 2, "estimate": 3}

    def sort_key(r: Row) -> tuple:
        if not r.usable:
            return (5, 0.0, r.method)
        v = -r.value if r.kind == "lower" else r.value
        return (order.get(r.kind, 4), v, r.method)

    g.rows.sort(key=sort_key)


def _method_order(names: set[str]) -> list[str]:
    known = [m for m in DESIGN_METHODS if m in names]
    return known + sorted(names - set(known))


def _ranking(groups: Sequence[Group], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        ranks, ratios, kinds = [], [], set()
        timeouts = errors = runs = 0
        for g in groups:
            for r in g.rows:
                if r.method != m or (g.radius is not None and r.radius is None):
                    continue  # a global row repeated in a radius group counts once
                runs += 1
                kinds.add(r.kind)
                # a run stopped by its limit is a timeout even when it kept a proven bound
                timeouts += r.status == "timeout"
                if not r.usable:
                    errors += r.status != "timeout" and not r.refused
                    continue
                if r.rank is not None:
                    ranks.append(r.rank)
                if r.ratio is not None and r.ratio > 0:
                    ratios.append(r.ratio)
        out[m] = {
            "kind": "/".join(sorted(kinds)), "runs": runs, "timeouts": timeouts,
            "errors": errors,
            "mean_rank": sum(ranks) / len(ranks) if ranks else None, "ranked": len(ranks),
            "geomean_ratio": (math.exp(sum(math.log(x) for x in ratios) / len(ratios))
                              if ratios else None),
        }
    return out


# ---------------------------------------------------------------------------- formats
def _cell(r: Row | None) -> str:
    if r is None:
        return ""
    if not r.usable:
        return "refused" if r.refused else {"timeout": "timeout", "unavailable": "n/a"}.get(
            r.status, "error")
    mark = "" if r.certified and r.kind != "estimate" else "*"
    return fmt(r.value) + mark + (" (t)" if r.status == "timeout" else "") + _gap(r)


def _wide(a: Analysis) -> tuple[list[str], list[list[str]]]:
    header = ["problem", "norm", "domain"] + a.methods
    rows = []
    for g in a.groups:
        by_method = {r.method: r for r in g.rows
                     if not (g.radius is not None and r.radius is None)}
        rows.append([g.problem, g.norm, "global" if g.radius is None else f"r={g.radius:g}"]
                    + [_cell(by_method.get(m)) for m in a.methods])
    return header, rows


def markdown(a: Analysis, title: str) -> str:
    lines = [f"# {title}", ""]
    if a.violations:
        lines.append(f"**{len(a.violations)} VIOLATION(S) of lower <= exact <= upper among "
                     "certified bounds:**")
        lines += [f"- **{v.text()}**" for v in a.violations]
    else:
        lines.append("No violation of lower <= exact <= upper among certified bounds.")
    lines += ["", "Values are Lipschitz constants in the norm shown; `*` marks an estimate or "
              "an uncertified value, `(t)` a bound returned at the time limit, `[>= L, gap G %]` "
              "the certified lower bound and proven gap of an exact method stopped early. "
              "Local columns (r=...) bound the constant over the ball of that radius around "
              "the problem's "
              "centre.", "", "## Summary", ""]
    header, rows = _wide(a)
    lines += md_table(header, rows)
    lines += ["", "## Per problem", "",
              "Upper bounds ascending, then exact values, lower bounds descending, estimates; "
              "ratio = value / best certified lower (or exact) value of a quantity no larger.",
              ""]
    for g in a.groups:
        lines += [f"### {g.label}", ""]
        has_pub = any(r.published is not None for r in g.rows)
        head = ["method", "kind", "quantity", "value", "certified", "ratio", "rank",
                "seconds", "status"] + (["published"] if has_pub else [])
        body = []
        for r in g.rows:
            row = [r.method, r.kind, r.quantity, fmt(r.value) if r.usable else "—",
                   "yes" if r.certified else "no", fmt(r.ratio) if r.ratio else "—",
                   str(r.rank or "—"), f"{r.seconds:.3g}",
                   r.status + (f": {r.message}" if r.message and not r.usable else "")
                   + _gap(r)]
            if has_pub:
                row.append(fmt(r.published) if r.published is not None else "")
            body.append(row)
        lines += md_table(head, body) + [""]
    return "\n".join(lines)


def _best(rows: Sequence[Row], kinds: tuple[str, ...], *, low: bool,
          max_quantity: str = "global") -> Row | None:
    q = QUANTITY_ORDER[max_quantity]
    pool = [r for r in rows if r.sound and r.kind in kinds and r.method != KNOWN
            and QUANTITY_ORDER[r.quantity] <= q]
    if not pool:
        return None
    return max(pool, key=lambda r: r.value) if low else min(pool, key=lambda r: r.value)


def _named(r: Row | None) -> str:
    return f"{fmt(r.value)} ({r.method})" if r else "—"


def _ratio(r: Row | None, ref: Row | None) -> str:
    return fmt(r.value / ref.value, 3) if r and ref and ref.value > 0 else "—"


def _glance(g: Group) -> tuple[Row | None, Row | None, Row | None, Row | None]:
    """(tightest certified upper, exact, best certified lower, AutoLip) of one group."""
    rows = [r for r in g.rows if not (g.radius is not None and r.radius is None)
            or r.kind in ("upper", "exact")]
    up = _best(rows, ("upper",), low=False)
    ex = _best(rows, ("exact",), low=True)
    lo = _best(rows, ("lower", "exact"), low=True,
               max_quantity=up.quantity if up else "global")
    auto = next((r for r in rows if r.method == "autolip" and r.sound), None)
    return up, ex, lo, auto


def _where(g: Group) -> str:
    return "global" if g.radius is None else f"r={g.radius:g}"


def glance_markdown(a: Analysis, title: str) -> str:
    """One line per problem, norm and domain: the tightest certified upper bound, the exact
    value if known, the best certified lower bound, and how far apart they are."""
    head = ["problem", "norm", "domain", "tightest certified upper", "exact",
            "best certified lower", "upper / lower", "AutoLip / lower"]
    body = []
    local = {(g.problem, g.norm) for g in a.groups if g.radius is not None}
    for g in a.groups:
        up, ex, lo, auto = _glance(g)
        if not (up or lo):
            continue
        if g.radius is None and not (ex or lo) and (g.problem, g.norm) in local:
            continue  # a domain problem's global upper bounds appear in its domain rows
        body.append([g.problem, g.norm, _where(g), _named(up), fmt(ex.value) if ex else "",
                     _named(lo), _ratio(up, lo), _ratio(auto, lo)])
    lines = [f"# {title}: at a glance", "",
             "Per problem: the tightest certified upper bound, the exact constant where an "
             "exact method finished, the best certified lower bound (an exact value counts "
             "as one), and the ratios of the tightest upper bound and of AutoLip to that "
             "lower bound (1 = the constant is pinned down). Every method and time: table.md.",
             ""]
    return "\n".join(lines + md_table(head, body)) + "\n"


def _change(new: Row | None, old: Row | None, *, upper: bool) -> str:
    """How a run's bound compares with the reference's: same, tighter or looser."""
    if new is None and old is None:
        return ""
    if old is None:
        return "new"
    if new is None:
        return "missing"
    if abs(new.value - old.value) <= REFERENCE_RTOL * max(abs(old.value), 1e-300):
        return "same"
    better = new.value < old.value if upper else new.value > old.value
    return f"{'tighter' if better else 'looser'} x{new.value / old.value:.6g}"


def reference_markdown(run: Analysis, ref: Analysis, ref_dir: str) -> str:
    """A run beside the reference results: per problem, norm and domain, the tightest
    certified upper and best certified lower bound of each, and how they moved."""
    ref_groups = {(g.problem, g.norm, g.radius): g for g in ref.groups}
    head = ["problem", "norm", "domain", "upper (run)", "upper (reference)", "upper",
            "lower (run)", "lower (reference)", "lower"]
    body, counts = [], {"same": 0, "tighter": 0, "looser": 0}
    for g in run.groups:
        up, _, lo, _ = _glance(g)
        old = ref_groups.get((g.problem, g.norm, g.radius))
        oup, _, olo, _ = _glance(old) if old is not None else (None, None, None, None)
        if not (up or lo or oup or olo):
            continue
        cu, cl = _change(up, oup, upper=True), _change(lo, olo, upper=False)
        for c in (cu, cl):
            word = c.split(" ")[0]
            if word in counts:
                counts[word] += 1
        body.append([g.problem, g.norm, _where(g), _named(up), _named(oup), cu, _named(lo),
                     _named(olo), cl])
    lines = ["# This run beside the reference results", "",
             f"Reference: {ref_dir} (the committed results of the same preset). Same: within "
             f"{REFERENCE_RTOL:g} relative; tighter: a lower upper bound or a higher lower "
             "bound than the reference. "
             f"{counts['same']} same, {counts['tighter']} tighter, {counts['looser']} looser.",
             ""]
    return "\n".join(lines + md_table(head, body)) + "\n"


def ranking_markdown(a: Analysis) -> str:
    lines = ["# Ranking across problems", "",
             "Mean rank: upper bounds ranked ascending among the upper bounds and exact values "
             "of each problem/norm/domain, lower bounds descending among the lower bounds. "
             "Geometric-mean ratio: value / best certified lower (or exact) value (1 is "
             "tight; above 1 for upper bounds, below 1 for lower bounds). Timeouts: runs "
             "stopped by their time limit (those that kept a proven bound are still ranked); "
             "errors: runs that failed otherwise (a method refusing an input it does not "
             "handle is neither).", ""]
    rows = []
    order = {"upper": 0, "exact": 1, "lower": 2, "estimate": 3}
    ranked = sorted(a.ranking.items(), key=lambda kv: (
        order.get(kv[1]["kind"].split("/")[0], 4),
        kv[1]["mean_rank"] if kv[1]["mean_rank"] is not None else math.inf, kv[0]))
    for m, s in ranked:
        rows.append([m, s["kind"], fmt(s["mean_rank"], 3) if s["mean_rank"] else "—",
                     fmt(s["geomean_ratio"]) if s["geomean_ratio"] else "—",
                     str(s["runs"]), str(s["timeouts"]), str(s["errors"])])
    lines += md_table(["method", "kind", "mean rank", "geo-mean ratio", "runs",
                        "timeouts", "errors"], rows)
    if a.violations:
        lines = [f"**{len(a.violations)} violation(s): see table.md**", ""] + lines
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")


def latex(a: Analysis) -> str:
    header, rows = _wide(a)
    cols = "lll" + "r" * (len(header) - 3)
    lines = [r"\begin{tabular}{" + cols + "}", r"\toprule",
             " & ".join(_tex_escape(h) for h in header) + r" \\", r"\midrule"]
    for row in rows:
        cells = [_tex_escape(c).replace("—", "--").replace("*", r"$^*$") for c in row]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def write_csv(a: Analysis, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["problem", "family", "norm", "radius", "method", "kind", "quantity",
                    "value", "certified", "status", "seconds", "ratio", "rank"])
        for g in a.groups:
            for r in g.rows:
                if r.method == KNOWN or (g.radius is not None and r.radius is None):
                    continue
                w.writerow([g.problem, g.family, g.norm, "" if g.radius is None else g.radius,
                            r.method, r.kind, r.quantity,
                            "" if r.value is None else repr(r.value), r.certified, r.status,
                            f"{r.seconds:.6g}", "" if r.ratio is None else f"{r.ratio:.6g}",
                            "" if r.rank is None else r.rank])


def scaman_markdown(a: Analysis) -> str | None:
    """Our scaman2018 table beside the published one (None without such records)."""
    groups = {int(g.x): g for g in a.groups if g.family == "scaman2018" and g.norm == "2"
              and g.radius is None and g.x is not None}
    if not groups:
        return None
    from .problems import SCAMAN_PUBLISHED

    def table(values: Any, extra: Sequence[str] = ()) -> list[str]:
        rows = []
        for L in SCAMAN_LAYERS:
            rows.append([str(L)] + [values(L, m) for m in (*SCAMAN_COLUMNS, *extra)])
        heads = list(SCAMAN_HEADERS) + ["Exact (bab)" for _ in extra]
        return md_table(["# layers"] + heads, rows)

    def ours(L: int, m: str) -> str:
        g = groups.get(L)
        r = next((r for r in g.rows if r.method == m), None) if g else None
        return _cell(r) if r else ""

    lines = ["# Scaman & Virmaux 2018, MLP table: ours beside the published one", "",
             "Upper bounds: Frob., AutoLip, SeqLip, Greedy SL (`*` = estimate); lower bounds: "
             "Data, Annealing, Grid Search. l2 norm. The last column, not in the paper, is the "
             "exact constant by branch-and-bound (its certified upper bound, marked (t), when "
             "it hit the time limit).", "", "## This run", ""]
    lines += table(ours, ("bab",))
    lines += ["", "## Published (Scaman & Virmaux, NeurIPS 2018)", ""]
    lines += table(lambda L, m: fmt(SCAMAN_PUBLISHED[L][m]))
    lines += ["", "## Ratios", ""]
    rows = []
    for L in SCAMAN_LAYERS:
        g = groups.get(L)
        if g is None:
            continue
        val = {r.method: r.value for r in g.rows if r.usable}
        best_low = max([val[m] for m in ("data", "annealing", "grid") if m in val],
                       default=None)

        def ratio(a_: str, b_: str, v: dict = val) -> str:
            return fmt(v[a_] / v[b_], 3) if a_ in v and b_ in v and v[b_] else "—"

        pub = SCAMAN_PUBLISHED[L]
        rows.append([str(L), ratio("frobenius", "autolip"),
                     fmt(pub["frobenius"] / pub["autolip"], 3), ratio("seqlip", "autolip"),
                     fmt(pub["seqlip"] / pub["autolip"], 3),
                     fmt(val["seqlip"] / best_low, 3) if best_low and "seqlip" in val else "—",
                     fmt(pub["seqlip"] / max(pub["data"], pub["annealing"], pub["grid"]), 3)])
    lines += md_table(["# layers", "Frob./AutoLip", "(published)", "SeqLip/AutoLip",
                        "(published)", "SeqLip/best lower", "(published)"], rows)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ plots
def _figure() -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


# One colour and one marker per method, the same in every plot (tab20's 20 colours, then
# tab20b's for methods not listed); the line style says the kind of bound.
METHOD_COLOURS = (
    "frobenius", "autolip", "seqlip", "seqlip-greedy", "lipsdp-neuron", "lipsdp-layer",
    "eclipse-fast", "liplt", "local", "regions", "hypercube", "mip", "bab", "data", "random",
    "gradient-ascent", "annealing", "grid", "region-walk", "clever",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p", "d", "8", "H")
KIND_LINES = {"upper": "-", "exact": "-", "lower": "--", "estimate": ":"}


def method_style(method: str, kind: str) -> dict[str, Any]:
    """Colour, marker and line of a method: fixed per method across every plot."""
    from matplotlib import colormaps

    if method in METHOD_COLOURS:
        i = METHOD_COLOURS.index(method)
        colour = colormaps["tab20"](i % 20)
    else:
        i = sum(map(ord, method))  # stable across runs, unlike hash()
        colour = colormaps["tab20b"](i % 20)
    style: dict[str, Any] = {"color": colour, "marker": MARKERS[i % len(MARKERS)],
                             "linestyle": KIND_LINES.get(kind, "-")}
    if kind == "exact":
        style.update(linewidth=2.4)
    return style


def _plot_lines(ax: Any, lines: list[tuple[str, str, list[float], list[float]]]) -> None:
    """Draw (method, kind, xs, ys) lines so that coinciding ones stay visible: each later
    line gets smaller, hollow-ringed markers on top of the earlier ones."""
    for order, (m, kind, xs, ys) in enumerate(lines):
        st = method_style(m, kind)
        size = max(3.0, 9.0 - 1.5 * order)
        ax.plot(xs, ys, label=m, markersize=size, zorder=2 + order, alpha=0.9, **st)


def _integer_axis(ax: Any, xs: Sequence[float]) -> None:
    """Ticks at whole numbers only when the axis counts things (layers, nodes)."""
    if xs and all(float(x).is_integer() for x in xs):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig: Any, ax: Any, path: Path) -> Path:
    ax.grid(True, which="both", alpha=0.3)
    # beside the axes, so that no line hides under it
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _series_groups(a: Analysis) -> dict[tuple[str, str], list[Group]]:
    """Per (series, norm), one group per problem: the global one, or for a problem measured
    on a domain, the group of its smallest radius (it also holds the global upper bounds)."""
    chosen: dict[tuple[str, str, str], Group] = {}
    for g in a.groups:
        if not g.series or g.x is None:
            continue
        key = (g.series, g.norm, g.problem)
        old = chosen.get(key)
        if old is None or (old.radius is None and g.radius is not None) or (
                g.radius is not None and old.radius is not None and g.radius < old.radius):
            chosen[key] = g
    out: dict[tuple[str, str], list[Group]] = {}
    for (series, norm, _), g in chosen.items():
        out.setdefault((series, norm), []).append(g)
    return out


def plot_depth(a: Analysis, out: Path) -> list[Path]:
    """Bound vs position in the series (depth, width), log scale, one line per method."""
    paths = []
    for (name, norm), groups in sorted(_series_groups(a).items()):
        if len({g.x for g in groups}) < 2:
            continue
        fig, ax = _figure()
        lines = []
        for m in a.methods:
            pts = sorted((g.x, r.value, r.kind) for g in groups for r in g.rows
                         if r.method == m and r.usable and r.value > 0)
            if pts:
                lines.append((m, pts[0][2], [p[0] for p in pts], [p[1] for p in pts]))
        _plot_lines(ax, lines)
        ax.set_yscale("log")
        _integer_axis(ax, [g.x for g in groups])
        ax.set_xlabel(SERIES_AXIS.get(name, "position in series"))
        ax.set_ylabel(f"Lipschitz bound (l{norm})")
        radii = sorted({g.radius for g in groups if g.radius is not None})
        where = ("global constant" if not radii
                 else f"constant over the domain of radius {radii[0]:g}")
        ax.set_title(f"{name}: bounds on the {where}\n(solid: upper, dashed: lower, "
                     "thick: exact)", fontsize=9)
        paths.append(_save(fig, ax, out / f"depth_{name}_l{norm}.png"))
    return paths


def plot_time(a: Analysis, out: Path) -> Path | None:
    """Ratio to the best lower bound vs seconds, one marker style per method."""
    fig, ax = _figure()
    any_point = False
    for m in a.methods:
        pts = [(max(r.seconds, 1e-4), r.ratio) for g in a.groups for r in g.rows
               if r.method == m and r.ratio and r.ratio > 0
               and not (g.radius is not None and r.radius is None)]
        if pts:
            any_point = True
            st = method_style(m, a.ranking[m]["kind"].split("/")[0])
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], label=m, s=16,
                       marker=st["marker"], color=st["color"])
    if not any_point:
        return None
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("seconds")
    ax.set_ylabel("value / best certified lower bound")
    ax.set_title("each bound's ratio to the best certified lower bound of its problem\n"
                 "against its run time", fontsize=9)
    return _save(fig, ax, out / "time.png")


def plot_radius(a: Analysis, out: Path) -> list[Path]:
    """Bound vs domain radius for problems with a radius series; global bounds, where the
    problem has them, as flat lines."""
    by: dict[tuple[str, str], list[Group]] = {}
    for g in a.groups:
        if g.radius is not None:
            by.setdefault((g.problem, g.norm), []).append(g)
    paths = []
    for (problem, norm), groups in sorted(by.items()):
        if len(groups) < 2:
            continue
        radii = sorted(g.radius for g in groups)
        fig, ax = _figure()
        lines, flat = [], []
        for m in a.methods:
            pts = sorted((g.radius, r.value, r.kind) for g in groups for r in g.rows
                         if r.method == m and r.usable and r.value > 0 and r.radius is not None)
            glob = [r for r in groups[0].rows if r.method == m and r.usable and r.radius is None
                    and r.value > 0]
            if pts:
                lines.append((m, pts[0][2], [p[0] for p in pts], [p[1] for p in pts]))
            elif glob:
                flat.append((m, glob[0]))
        _plot_lines(ax, lines)
        for m, r in flat:
            st = {**method_style(m, r.kind), "linestyle": "-.", "marker": None}
            ax.plot([radii[0], radii[-1]], [r.value] * 2, label=f"{m} (global)",
                    linewidth=1.0, **st)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("radius of the l2 ball around the centre")
        ax.set_ylabel(f"Lipschitz bound (l{norm})")
        quantity = sorted({r.quantity for g in groups for r in g.rows if r.radius is not None})
        what = " and ".join(quantity) if quantity else "local"
        extra = "; global bounds dash-dotted" if flat else ""
        ax.set_title(f"{problem}: bounds on the {what} constant\nagainst the radius{extra}",
                     fontsize=9)
        paths.append(_save(fig, ax, out / f"radius_{problem}_l{norm}.png"))
    return paths


# ------------------------------------------------------------------------------ write


def load_results(out: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out = Path(out)
    if not (out / RECORDS).exists():
        raise InputError(f"{out}: no {RECORDS} (run `lipopt compare --out {out}` first)")
    records = Store(out).read()
    problems: dict[str, Any] = {}
    path = out / "problems.json"
    if path.exists():
        try:
            problems = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{path}: not valid JSON") from None
        if not isinstance(problems, dict) or not all(
                isinstance(v, dict) for v in problems.values()):
            raise InputError(f"{path}: expected an object of problem name -> settings")
    return records, problems


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{path}: not valid JSON") from None


def write_report(out: str | Path, *, plots: bool = True,
                 reference: str | Path | None = None) -> list[Path]:
    """Render every table and plot of a results directory; returns the files written.
    With `reference` (another results directory, e.g. the committed results of the same
    preset), reference.md sets this run beside it."""
    out = Path(out)
    records, problems = load_results(out)
    a = analyse(records, problems)
    title = f"Results: {out.name}"
    written = []
    for name, text in (("table.md", markdown(a, title)), ("ranking.md", ranking_markdown(a)),
                       ("summary.md", glance_markdown(a, title)), ("table.tex", latex(a))):
        (out / name).write_text(text if text.endswith("\n") else text + "\n")
        written.append(out / name)
    write_csv(a, out / "table.csv")
    (out / "table.json").write_text(json.dumps({
        "violations": [v.text() for v in a.violations], "ranking": a.ranking,
        "groups": [{"problem": g.problem, "norm": g.norm, "radius": g.radius,
                    "rows": [r.__dict__ for r in g.rows]} for g in a.groups]},
        indent=1, default=str) + "\n")
    written += [out / "table.csv", out / "table.json"]
    if reference is not None and Path(reference).resolve() != out.resolve():
        ref_records, ref_problems = load_results(reference)
        text = reference_markdown(a, analyse(ref_records, ref_problems), str(reference))
        (out / "reference.md").write_text(text)
        written.append(out / "reference.md")
    cnn = cnn_markdown(a, alexnet=_read_json(out / ALEXNET_FILE))
    if cnn:
        (out / "scaman2018-cnn.md").write_text(cnn)
        written.append(out / "scaman2018-cnn.md")
    scaman = scaman_markdown(a)
    if scaman:
        (out / "scaman2018.md").write_text(scaman)
        written.append(out / "scaman2018.md")
    from .regularisers_table import regularisers_files

    written += regularisers_files(a, out, KNOWN, plots=plots)
    if plots:
        written += plot_depth(a, out) + plot_radius(a, out)
        t = plot_time(a, out)
        if t:
            written.append(t)
    return written


