"""The installed `lipopt` command, run as a new user runs it: for every registered method, on
a network it accepts, in every norm it supports, globally and on each domain it allows,
`--json` prints exactly one JSON object on stdout and nothing else, and text output is one
line with no native solver banner on either stream (native libraries write below Python's
sys.stdout, so only a real subprocess shows what they print)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.io import save

# Cheaper settings (the output format, not the search effort, is under test).
FAST = {"annealing": ["maxfun=60"], "random": ["samples=200"],
        "gradient-ascent": ["restarts=2", "steps=30"], "grid": ["resolution=30"],
        "clever": ["batches=10", "batch_size=16"], "region-walk": ["restarts=2"]}
# What native libraries print when left alone (HiGHS's banner, SCS/Clarabel/CVXOPT logs).
BANNERS = ("Running HiGHS", "third-party software", "SCS v", "Clarabel.rs", "pcost",
           "MOSEK Version", "Coefficient ranges", "Presolving model")
# Seconds each command may take (a method that hangs fails the test instead of CI).
COMMAND_TIMEOUT = 240


def lipopt() -> list[str]:
    """The console script installed beside this interpreter (else the one on PATH)."""
    here = Path(sys.executable).with_name("lipopt")
    path = str(here) if here.exists() else shutil.which("lipopt")
    if path is None:
        pytest.fail("the `lipopt` command is not installed (pip install -e .)")
    return [path]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LIPOPT_VERBOSE", None)
    return subprocess.run([*lipopt(), *args], capture_output=True, text=True, env=env,
                          timeout=COMMAND_TIMEOUT)


@pytest.fixture(scope="module")
def problem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One ReLU net every method accepts (one hidden layer, for `hypercube`), with data
    points for `data`, and a centre file for the domains."""
    tmp = tmp_path_factory.mktemp("installed")
    net = random_mlp([3, 6, 2], seed=4)
    X = np.random.default_rng(0).standard_normal((12, 3))
    path = save(net, tmp / "net.npz", X=X)
    center = tmp / "center.npy"
    np.save(center, np.array([0.1, -0.2, 0.3]))
    return path, center


def methods() -> list[dict]:
    out = run("methods", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def invocations(info: dict, center: Path) -> list[list[str]]:
    """Every norm globally (where allowed), and every allowed domain kind in one norm."""
    calls = []
    opts = [x for o in FAST.get(info["name"], []) for x in ("-o", o)]
    if info["domain"] != "required":
        calls += [["--norm", norm, *opts] for norm in info["norms"]]
    if info["domain"] != "never":
        for kind in info["domain_kinds"]:
            calls.append(["--norm", info["norms"][0], "--center", str(center), "--radius",
                          "0.5", "--domain", kind, *opts])
    return calls


def test_every_method_prints_one_json_object_and_no_banner(problem) -> None:
    path, center = problem
    infos = methods()
    assert len(infos) >= 15
    jobs = [(info, extra, json_mode)
            for info in infos
            for i, extra in enumerate(invocations(info, center))
            for json_mode in ((True, False) if i == 0 else (True,))]

    def one(job: tuple[dict, list[str], bool]) -> str | None:
        info, extra, json_mode = job
        args = ["bound", str(path), "--method", info["name"], *extra]
        out = run(*args, *(["--json"] if json_mode else []))
        where = f"lipopt {' '.join(args)}"
        if out.returncode != 0:
            return f"{where}: exit {out.returncode}: {out.stderr.strip()[-300:]}"
        for text, stream in ((out.stdout, "stdout"), (out.stderr, "stderr")):
            hit = [b for b in BANNERS if b in text]
            if hit:
                return f"{where}: native output on {stream}: {text[:200]!r}"
        if json_mode:
            try:
                obj = json.loads(out.stdout)
            except json.JSONDecodeError:
                return f"{where} --json: stdout is not one JSON object: {out.stdout[:200]!r}"
            if not isinstance(obj, dict) or obj.get("method") != info["name"]:
                return f"{where} --json: not a Bound of {info['name']}: {out.stdout[:200]!r}"
        else:
            lines = out.stdout.splitlines()
            if len(lines) != 1 or not lines[0].startswith(info["name"]):
                return f"{where}: text output is not the one Bound line: {out.stdout[:200]!r}"
        return None

    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for p in pool.map(one, jobs) if p]
    assert not problems, "\n".join(problems)


def test_unknown_option_is_one_line_with_the_valid_ones(problem) -> None:
    path, _ = problem
    out = run("bound", str(path), "--method", "regions", "-o", "max_regoins=1", "--json")
    assert out.returncode == 2 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "max_regoins" in lines[0] and "max_regions" in lines[0]
