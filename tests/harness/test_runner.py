"""The batch runner: store, planning, faults, resumption after SIGKILL, Dask, validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lipopt_suite.cli import main
from lipopt_suite.errors import InputError
from lipopt_suite.harness.problems import load_manifest
from lipopt_suite.harness.runner import compare, plan_jobs
from lipopt_suite.harness.store import Store
from lipopt_suite.registry import METHODS

from .conftest import FAULTY, make_suite

REPO = Path(__file__).resolve().parents[2]
# A hang must cost its limit and no more: the limit plus the time to notice and kill the
# worker (the parent wakes at the deadline) and to report; 3 s covers a loaded 2-core box.
KILL_SLACK = 3.0


def _keys(records: list[dict]) -> list[str]:
    return [r["key"] for r in records]


def _values(records: list[dict]) -> dict[str, object]:
    return {r["key"]: (r["status"], r["value"]) for r in records}


# ------------------------------------------------------------------------------- store
def test_store_cuts_a_torn_last_line_and_drops_duplicates(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for k in range(3):
        store.append({"key": f"k{k}", "value": k})
    store.append({"key": "k1", "value": 99})  # a duplicate key: the first record wins
    store.close()
    with open(tmp_path / "records.jsonl", "ab") as f:
        f.write(b'{"key": "k3", "val')  # a write cut short by a kill
    records = Store(tmp_path).load()
    assert [(r["key"], r["value"]) for r in records] == [("k0", 0), ("k1", 1), ("k2", 2)]
    text = (tmp_path / "records.jsonl").read_text()
    assert text.endswith("\n") and len(text.splitlines()) == 3
    assert all(json.loads(line) for line in text.splitlines())


def test_store_drops_a_corrupt_middle_line(tmp_path: Path) -> None:
    (tmp_path / "records.jsonl").write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    assert _keys(Store(tmp_path).load()) == ["a", "b"]
    assert (tmp_path / "records.jsonl").read_text() == '{"key": "a"}\n{"key": "b"}\n'


# ---------------------------------------------------------------------------- planning
def test_plan_jobs_expands_radii_only_for_local_methods(tmp_path: Path) -> None:
    root = make_suite(tmp_path, 1, local=True)
    manifest = load_manifest(root)
    from lipopt_suite.harness.problems import check_files

    p = manifest["net0_local"]
    loaded = check_files([p])
    jobs, skipped = plan_jobs([p], loaded, lambda _: [
        ("autolip", {}), ("random", {}), ("clever", {}), ("frobenius", {})], ["2", "inf"])
    by = {(j.method, j.norm, j.radius) for j in jobs}
    # global methods once, local-capable ones at every radius, anchored as the manifest says
    assert ("autolip", "2", None) in by and ("autolip", "inf", None) in by
    assert {r for m, n, r in by if m == "random" and n == "2"} == {0.1, 0.5}
    assert all(j.domain["anchored"] for j in jobs if j.method in ("random", "clever"))
    assert ("frobenius", "inf", None) not in by
    assert any(s[1] == "frobenius" and s[2] == "inf" for s in skipped)
    # the data bound needs X: the file has it, so the job passes it on
    jobs, _ = plan_jobs([manifest["net0"]], check_files([manifest["net0"]]),
                        lambda _: [("data", {})], None)
    assert jobs and all(j.use_x for j in jobs)


# ------------------------------------------------------------------------------ faults
def test_faulty_methods_become_records_and_the_batch_goes_on(suite: Path,
                                                             tmp_path: Path) -> None:
    limit = 2.0
    start = time.perf_counter()
    run = compare(["net0"], methods=["test-raise", "test-sleep", "test-crash",
                                             "autolip"],
                  norms=["2"], root=suite, out=tmp_path / "out", jobs=2, time_limit=limit,
                  imports=[FAULTY], progress=False, report=False)
    elapsed = time.perf_counter() - start
    by = {(r["problem"], r["method"]): r for r in run.records}
    assert len(run.records) == 4 and run.ran == 4
    for p in ("net0",):
        assert by[p, "test-raise"]["status"] == "error"
        assert "deliberate failure" in by[p, "test-raise"]["details"]["message"]
        assert by[p, "test-sleep"]["status"] == "timeout"
        assert by[p, "test-sleep"]["wall"] < limit + KILL_SLACK
        assert by[p, "test-crash"]["status"] == "error"
        assert "died" in by[p, "test-crash"]["details"]["message"]
        assert by[p, "autolip"]["status"] == "ok" and by[p, "autolip"]["value"] > 0
    # the hang costs one limit, plus starting the replacement workers
    assert elapsed < limit + 30
    assert not any(m.startswith("test-") for m in METHODS)  # registry left as it was


def test_rerun_resumes_and_fresh_starts_over(suite: Path, tmp_path: Path) -> None:
    kw = dict(methods=["autolip", "frobenius"], root=suite, out=tmp_path / "out", jobs=1,
              progress=False, report=False)
    first = compare(**kw)
    assert first.ran == 9  # 3 problems x (autolip in l2 and l_inf, frobenius in l2)
    again = compare(**kw)
    assert again.ran == 0 and _values(again.records) == _values(first.records)
    fresh = compare(["net0"], fresh=True, **kw)
    assert fresh.ran == 3 and len(fresh.records) == 3


BATCH = dict(methods=["test-slow", "test-raise"], norms=["2", "inf", "1"], imports=[FAULTY],
             jobs=2, progress=False, report=False)
BATCH_PROBLEMS = [f"net{k}" for k in range(6)]
BATCH_SIZE = 6 * 3 + 6  # test-slow in three norms, test-raise in l2 only


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """An uninterrupted local run of the batch the SIGKILL and Dask tests repeat."""
    tmp = tmp_path_factory.mktemp("reference")
    root = make_suite(tmp / "problems", 6)
    run = compare(BATCH_PROBLEMS, root=root, out=tmp / "whole", **BATCH)
    assert run.ran == BATCH_SIZE == len(run.records)
    return root, _values(run.records)


def _wait_for_lines(path: Path, n: int, timeout: float) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            lines = path.read_bytes().count(b"\n")
            if lines >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} records after {timeout} s")


def test_sigkill_mid_batch_then_resume_equals_an_uninterrupted_run(
        reference: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    root, expected = reference
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "lipopt_suite.cli", "compare", "--root", str(root),
            "--methods", "test-slow,test-raise", "--norm", "2,inf,1", "--import", FAULTY,
            "--jobs", "2", "--out", str(out), "--quiet", "--no-report", *BATCH_PROBLEMS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_for_lines(out / "records.jsonl", 4, timeout=120)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    partial = Store(out).load(repair=False)
    assert 4 <= len(partial) < BATCH_SIZE, "the kill should land mid-batch"
    # a record cut short as the process died: the resumed run must repair it
    with open(out / "records.jsonl", "ab") as f:
        f.write(b'{"key": "net5|test-slow|1|global", "kind": "up')
    resumed = compare(BATCH_PROBLEMS, root=root, out=out, **BATCH)
    assert resumed.ran == BATCH_SIZE - len(partial)
    assert _values(resumed.records) == expected
    lines = (out / "records.jsonl").read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == len(set(keys)) == BATCH_SIZE


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_dask_local_cluster_gives_the_same_records(
        reference: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    root, expected = reference
    run = compare(BATCH_PROBLEMS, root=root, out=tmp_path / "dask", executor="dask", **BATCH)
    assert _values(run.records) == expected
    assert sum(r["status"] == "error" for r in run.records) == 6  # test-raise


# -------------------------------------------------------------------------- validation
@pytest.mark.parametrize("case, words", [
    ("method", "unknown method 'no-such-method'"),
    ("preset", "unknown preset 'nope'"),
    ("problem", "unknown problem 'nonexistent'"),
    ("missing", "missing.npz"),
    ("corrupt", "net1.npz"),
])
def test_bad_input_exits_2_with_one_line_before_any_job(suite: Path, tmp_path: Path,
                                                        capsys, case: str, words: str
                                                        ) -> None:
    out = tmp_path / "out"
    argv = ["compare", "--root", str(suite), "--out", str(out), "--quiet",
            "--methods", "autolip"]
    if case == "method":
        argv[-1] = "autolip,no-such-method"
    elif case == "preset":
        argv += ["--preset", "nope"]
    elif case == "problem":
        argv += ["nonexistent"]
    elif case == "missing":
        text = (suite / "manifest.toml").read_text().replace("net2.npz", "missing.npz")
        (suite / "manifest.toml").write_text(text)
    else:
        (suite / "net1.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
    assert not (out / "records.jsonl").exists()


def test_compare_function_raises_input_error(suite: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="time limit"):
        compare(root=suite, out=tmp_path, methods=["autolip"], time_limit=-1)
    with pytest.raises(InputError, match="executor"):
        compare(root=suite, out=tmp_path, methods=["autolip"], executor="slurm")


def test_a_run_writes_runs_preset_and_is_set_beside_the_reference(
        suite: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    kw = dict(methods=["autolip"], norms=["2"], root=suite, jobs=1, progress=False)
    # the committed reference of the preset lives in results/default
    reference = compare(out=Path("results") / "default", report=False, **kw)
    assert reference.out == Path("results/default") and reference.ran == 3
    run = compare(**kw)
    assert run.out == Path("runs/default") and run.ran == 3  # computed, not resumed
    text = (tmp_path / "runs" / "default" / "reference.md").read_text()
    assert "results/default" in text and "3 same, 0 tighter, 0 looser" in text
    assert compare(**kw).ran == 0  # a rerun resumes
