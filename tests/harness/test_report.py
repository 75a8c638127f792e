"""The report: violations by quantity, ratios, ranks, and the files it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lipopt_suite.cli import main
from lipopt_suite.harness.report import analyse, write_report
from lipopt_suite.harness.store import Store


def rec(method: str, kind: str, value: float | None, *, problem: str = "p", norm: str = "2",
        radius: float | None = None, quantity: str | None = None, certified: bool = True,
        status: str = "ok", seconds: float = 1.0, **extra) -> dict:
    if quantity is None:
        quantity = "global" if radius is None else "anchored"
    return {"key": f"{problem}|{method}|{norm}|{radius}", "problem": problem, "method": method,
            "norm": norm, "radius": radius, "kind": kind, "value": value,
            "certified": certified, "status": status, "quantity": quantity,
            "seconds": seconds, "details": {}, **extra}


def flagged(records: list[dict]) -> set[tuple[str, str]]:
    return {(v.low.method, v.high.method) for v in analyse(records).violations}


def test_a_lower_bound_above_an_upper_bound_is_flagged() -> None:
    records = [rec("autolip", "upper", 2.0), rec("grid", "lower", 2.5),
               rec("data", "lower", 1.0)]
    assert flagged(records) == {("grid", "autolip")}


def test_exact_values_sit_between_bounds() -> None:
    records = [rec("autolip", "upper", 2.0), rec("regions", "exact", 2.1),
               rec("grid", "lower", 1.0), rec("mip", "exact", 0.9)]
    # regions above an upper bound; mip below a lower bound; the two exact values differ
    assert flagged(records) == {("regions", "autolip"), ("grid", "mip"), ("regions", "mip")}


def test_quantities_are_compared_only_in_the_right_direction() -> None:
    r = 0.5
    records = [
        rec("local", "upper", 3.0, radius=r, quantity="anchored"),
        # a lower bound on the constant over the ball may exceed an anchored upper bound
        rec("mip", "lower", 4.0, radius=r, quantity="local"),
        # an anchored lower bound may not
        rec("gradient-ascent", "lower", 3.5, radius=r, quantity="anchored"),
        # a local upper bound must still dominate the local lower bound
        rec("box-upper", "upper", 3.9, radius=r, quantity="local"),
    ]
    assert flagged(records) == {("gradient-ascent", "local"), ("mip", "box-upper")}


def test_global_upper_bounds_also_bound_every_local_group() -> None:
    records = [rec("autolip", "upper", 2.0),
               rec("random", "lower", 2.2, radius=0.1, quantity="anchored")]
    assert flagged(records) == {("random", "autolip")}


def test_estimates_uncertified_values_other_norms_and_failures_are_never_flagged() -> None:
    records = [rec("autolip", "upper", 2.0),
               rec("clever", "estimate", 9.0, certified=False),
               rec("seqlip-greedy", "estimate", 0.1, certified=False),
               rec("grid", "lower", 3.0, certified=False),
               rec("data", "lower", 5.0, norm="inf"),
               rec("regions", "exact", None, status="error"),
               rec("lipsdp-neuron", "upper", 0.5, status="error")]
    assert flagged(records) == set()


def test_a_guaranteed_bound_from_the_manifest_is_checked() -> None:
    records = [rec("grid", "lower", 1.2), rec("autolip", "upper", 1.0)]
    problems = {"p": {"known_upper": {"2": 1.1}}}
    assert {(v.low.method, v.high.method) for v in analyse(records, problems).violations} == {
        ("grid", "autolip"), ("grid", "(guaranteed)")}


def test_ratios_ranks_and_geometric_means() -> None:
    records = [rec("autolip", "upper", 8.0, problem="a"), rec("frob", "upper", 16.0, problem="a"),
               rec("grid", "lower", 2.0, problem="a"), rec("data", "lower", 1.0, problem="a"),
               rec("autolip", "upper", 3.0, problem="b"), rec("frob", "upper", 2.0, problem="b"),
               rec("regions", "exact", 1.0, problem="b"), rec("grid", "lower", 0.5, problem="b")]
    a = analyse(records)
    g = {x.problem: {r.method: r for r in x.rows} for x in a.groups}
    assert g["a"]["autolip"].ratio == 4.0 and g["a"]["data"].ratio == 0.5
    assert g["b"]["frob"].ratio == 2.0  # against the exact value, not the best lower bound
    assert [r.method for r in [x for x in a.groups if x.problem == "a"][0].rows] == [
        "autolip", "frob", "grid", "data"]  # uppers ascending, then lowers descending
    assert g["b"]["regions"].rank == 1 and g["b"]["frob"].rank == 2
    assert a.ranking["autolip"]["mean_rank"] == (1 + 3) / 2
    tied = analyse([rec("regions", "exact", 1.0), rec("mip", "exact", 1.0 + 1e-12),
                    rec("autolip", "upper", 2.0)])
    assert {r.method: r.rank for r in tied.groups[0].rows} == {
        "regions": 1, "mip": 1, "autolip": 3}
    assert a.ranking["frob"]["geomean_ratio"] == pytest.approx((8 * 2) ** 0.5)
    assert a.ranking["grid"]["geomean_ratio"] == pytest.approx((1 * 0.5) ** 0.5)


def test_write_report_produces_every_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for depth, scale in ((2, 1.0), (3, 2.0), (4, 4.0)):
        meta = {"family": "toy", "series": "toy", "x": depth}
        p = f"d{depth}"
        store.append(rec("autolip", "upper", 10 * scale, problem=p, **meta))
        store.append(rec("grid", "lower", scale, problem=p, **meta))
        for r in (0.1, 1.0):
            store.append(rec("random", "lower", scale * r, problem=p, radius=r, **meta))
    store.append(rec("data", "lower", 50.0, problem="d2", family="toy", series="toy", x=2))
    store.close()
    written = {p.name for p in write_report(tmp_path)}
    for name in ("table.md", "summary.md", "table.csv", "table.tex", "table.json",
                 "ranking.md", "time.png", "depth_toy_l2.png", "radius_d2_l2.png"):
        assert name in written and (tmp_path / name).stat().st_size > 0
    table = (tmp_path / "table.md").read_text()
    first = next(line for line in table.splitlines()[1:] if line.strip())
    assert first.startswith("**1 VIOLATION") and "data = 50" in table
    rows = list(csv.DictReader(open(tmp_path / "table.csv")))
    assert len(rows) == 13
    assert json.loads((tmp_path / "table.json").read_text())["violations"]
    assert (tmp_path / "table.tex").read_text().startswith(r"\begin{tabular}")


def test_report_cli_on_a_directory_without_records(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "records.jsonl" in capsys.readouterr().err


def test_summary_pairs_the_tightest_upper_with_the_best_admissible_lower(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for r in (rec("autolip", "upper", 8.0), rec("lipsdp-neuron", "upper", 4.0),
              rec("clever", "estimate", 1.0, certified=False),
              rec("grid", "lower", 3.0, certified=False),  # uncertified: not used
              rec("data", "lower", 2.0),
              rec("local", "upper", 2.5, radius=0.1, quantity="anchored"),
              rec("mip", "lower", 2.8, radius=0.1, quantity="local"),  # not <= anchored
              rec("random", "lower", 2.4, radius=0.1, quantity="anchored")):
        store.append(r)
    store.close()
    write_report(tmp_path, plots=False)
    lines = [x for x in (tmp_path / "summary.md").read_text().splitlines()
             if x.startswith("| p |")]
    assert lines[0] == ("| p | 2 | global | 4 (lipsdp-neuron) |  | 2 (data) | 2 | 4 |")
    assert lines[1] == ("| p | 2 | r=0.1 | 2.5 (local) |  | 2.4 (random) | 1.04 | 3.33 |")


@pytest.mark.parametrize("damage, match", [
    (lambda lines: lines[:1] + [b'{"garbled": '] + lines[2:], "records.jsonl:2: not a JSON"),
    (lambda lines: [lines[0].replace(b'"value": 2.0', b'"value": "abc"')] + lines[1:],
     "'value' is not a number"),
    (lambda lines: [lines[0].replace(b'"problem": "p"', b'"problem": [1]')] + lines[1:],
     "'problem' missing or not a string"),
])
def test_a_corrupt_record_is_an_error_naming_its_line(tmp_path: Path, capsys, damage, match):
    store = Store(tmp_path)
    for r in (rec("autolip", "upper", 2.0), rec("grid", "lower", 1.0), rec("data", "lower", .5)):
        store.append(r)
    store.close()
    path = tmp_path / "records.jsonl"
    lines = path.read_bytes().split(b"\n")[:-1]
    assert b'"value": 2.0' in lines[0]
    path.write_bytes(b"\n".join(damage(lines)) + b"\n")
    assert main(["report", str(tmp_path), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err, err


def test_an_unterminated_last_record_is_skipped_and_problems_json_checked(tmp_path: Path,
                                                                          capsys) -> None:
    store = Store(tmp_path)
    store.append(rec("autolip", "upper", 2.0))
    store.close()
    with open(tmp_path / "records.jsonl", "ab") as f:
        f.write(b'{"key": "torn')  # a run killed while writing
    assert main(["report", str(tmp_path), "--no-plots"]) == 0
    capsys.readouterr()
    (tmp_path / "problems.json").write_text("[1, 2]")
    assert main(["report", str(tmp_path), "--no-plots"]) == 2
    assert "problems.json" in capsys.readouterr().err


def test_ranking_counts_timeouts_and_errors_but_not_refusals(tmp_path: Path) -> None:
    records = [rec("regions", "lower", 1.0, problem="a", status="timeout"),
               rec("regions", "exact", None, problem="b", status="timeout"),
               rec("regions", "exact", None, problem="c", status="error"),
               rec("regions", "exact", None, problem="d", status="error",
                   details={"error_type": "UnsupportedError"}),
               rec("autolip", "upper", 2.0, problem="a")]
    rank = analyse(records).ranking["regions"]
    assert (rank["runs"], rank["timeouts"], rank["errors"]) == (4, 2, 1)
    store = Store(tmp_path)
    for r in records:
        store.append(r)
    store.close()
    write_report(tmp_path, plots=False)
    line = next(x for x in (tmp_path / "ranking.md").read_text().splitlines()
                if x.startswith("| regions"))
    assert line.rstrip("| ").endswith("| 4 | 2 | 1")


def test_every_method_has_its_own_colour_and_marker_in_every_plot() -> None:
    from lipopt_suite.harness.report import method_style
    from lipopt_suite.registry import methods

    names = [m.name for m in methods()] + ["bab", "region-walk"]
    styles = {n: method_style(n, "upper") for n in names}
    pairs = {(tuple(s["color"]), s["marker"]) for s in styles.values()}
    assert len(pairs) == len(set(names))
    assert len({tuple(s["color"]) for s in styles.values()}) >= min(len(set(names)), 20)
    # the same method keeps its colour and marker whatever its kind or plot
    assert method_style("autolip", "upper")["color"] == method_style("autolip", "lower")[
        "color"]


def test_reference_md_sets_a_run_beside_the_reference(tmp_path: Path) -> None:
    ref, run = tmp_path / "ref", tmp_path / "run"
    for where, up, low in ((ref, 4.0, 1.0), (run, 3.0, 1.0)):
        store = Store(where)
        store.append(rec("autolip", "upper", up))
        store.append(rec("grid", "lower", low))
        store.close()
    written = {p.name for p in write_report(run, plots=False, reference=ref)}
    assert "reference.md" in written
    text = (run / "reference.md").read_text()
    row = next(x for x in text.splitlines() if x.startswith("| p |"))
    assert "tighter x0.75" in row and "| same" in row
    assert "1 same, 1 tighter, 0 looser" in text


def test_a_stopped_anytime_exact_method_shows_its_proven_interval(tmp_path: Path) -> None:
    stopped = {"lower": 7.5, "upper": 7.6, "gap": 0.6 / 7.5 * 0.1}
    records = [rec("bab", "upper", 7.6, status="timeout", details=stopped),
               rec("autolip", "upper", 20.0, details={"gap": 0.5}),  # not an interval
               rec("grid", "lower", 7.4)]
    store = Store(tmp_path)
    for r in records:
        store.append(r)
    store.close()
    write_report(tmp_path, plots=False)
    table = (tmp_path / "table.md").read_text()
    assert "7.6 (t) [>= 7.5, gap 0.8 %]" in table  # the summary cell
    assert "timeout [>= 7.5, gap 0.8 %]" in table  # the per-problem row
    assert table.count("gap 0.8") == 2 and "gap 50" not in table
