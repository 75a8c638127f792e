"""`lipopt sandwich` from a folder with no problems/, one JSON object, refusals in one line,
the README example as written; `lipopt compare FILE` from such a folder."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lipopt_suite
from lipopt_suite import estimate, save
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.harness.sandwich import candidates

ROOT = Path(lipopt_suite.__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT = 120  # seconds per command: a hang fails the test instead of CI
# the certified ends against the brute-force value (see tests/harness/test_sandwich_engine)
RTOL = 1e-9


def lipopt(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`lipopt ARGS` run from `cwd`, this checkout's package first on the path."""
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("LIPOPT_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "lipopt_suite.cli", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=TIMEOUT)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder but for one small network file (no problems/, no manifest)."""
    save(random_mlp([3, 6, 5, 1], seed=7), tmp_path / "mynet.npz",
         X=np.random.default_rng(0).standard_normal((10, 3)))
    assert not (tmp_path / "problems").exists()
    return tmp_path


def test_json_is_one_object_holding_the_exact_value(folder):
    proc = lipopt(folder, "sandwich", "mynet.npz", "--budget", "30", "--json", "--methods",
                  "autolip,lipsdp-neuron,random,region-walk,gradient-ascent,bab")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # the whole of stdout is one object
    assert {"lower", "upper", "exact", "status", "lower_methods", "upper_methods",
            "witness", "seconds", "bounds"} <= set(data)
    brute = estimate(lipopt_suite.load(folder / "mynet.npz"), "regions").value
    assert data["lower"] <= brute * (1 + RTOL) and brute <= data["upper"] * (1 + RTOL)
    assert proc.stderr == ""  # no progress lines with --json


def test_human_output_and_a_box_domain(folder):
    np.save(folder / "x0.npy", np.array([0.1, 0.0, -0.2]))
    proc = lipopt(folder, "sandwich", "mynet.npz", "--budget", "10", "--center", "x0.npy",
                  "--radius", "0.5", "--domain", "box", "--methods",
                  "autolip,lipsdp-neuron,random,bab")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "certified interval" in out and "box of radius 0.5" in out
    assert re.search(r"upper end by\s+\w", out) and re.search(r"lower end by\s+\w", out)


@pytest.mark.parametrize("args, message", [
    (("missing.npz",), "no such file"),
    (("bad.npz",), "bad.npz"),
    (("mynet.npz", "--budget", "-1"), "--budget"),
    (("mynet.npz", "--norm", "2", "--methods", "mip"), "no registered method applies"),
    (("mynet.npz", "--methods", "nope"), "unknown method"),
    (("mynet.npz", "--radius", "0.1"), "stores no 'center'"),
])
def test_refusals_are_one_line_with_exit_code_2(folder, args, message):
    (folder / "bad.npz").write_bytes(b"not a zip file")
    proc = lipopt(folder, "sandwich", *args)
    assert proc.returncode == 2
    assert proc.stdout == "" and proc.stderr.strip().count("\n") == 0
    assert message in proc.stderr


def readme_block(start: str) -> str:
    """The README's first fenced block whose body holds a line starting with `start`."""
    for block in re.findall(r"```(?:bash|python)\n(.*?)```", README.read_text(), re.S):
        if any(line.startswith(start) for line in block.splitlines()):
            return block
    pytest.fail(f"README.md has no example starting with {start!r}")


def test_readme_example_runs_as_written(folder):
    line = next(t for t in readme_block("lipopt sandwich ").splitlines()
                if t.startswith("lipopt sandwich "))
    args = shlex.split(line, comments=True)
    assert args[:3] == ["lipopt", "sandwich", "mynet.npz"]
    proc = lipopt(folder, *args[1:])
    assert proc.returncode == 0, proc.stderr
    assert "certified interval" in proc.stdout


def test_readme_python_example_runs_as_written(folder):
    code = readme_block("s = lo.sandwich(")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                          text=True, env=env, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr


def test_compare_runs_a_file_from_any_folder(folder):
    proc = lipopt(folder, "compare", "mynet.npz", "--methods", "autolip,random", "--quiet",
                  "--no-report", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(t) for t in
               (folder / "runs" / "default" / "records.jsonl").read_text().splitlines()]
    assert sorted(r["method"] for r in records) == ["autolip", "random"]


def test_compare_chooses_methods_as_sandwich_does(folder, monkeypatch):
    from lipopt_suite.harness.problems import get_preset
    from lipopt_suite.harness.runner import _plan

    monkeypatch.chdir(folder)
    _, jobs, skipped = _plan(["mynet.npz"], get_preset("default"), None, ["2"],
                             "problems", lambda m: None)
    names = [m.name for m in candidates()]  # the registry's choice, in its order
    assert {j.method for j in jobs} | {s[1] for s in skipped} == set(names)
    assert [j.method for j in jobs] == [n for n in names if n in {j.method for j in jobs}]
    assert {"lipsdp-neuron", "region-walk", "bab"} <= {j.method for j in jobs}


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning",
                            "ignore::DeprecationWarning")
@pytest.mark.parametrize("suffix", [".pt", ".onnx"])
def test_other_file_formats_from_an_empty_folder(tmp_path, monkeypatch, capsys, suffix):
    torch = pytest.importorskip("torch")
    if suffix == ".onnx":
        pytest.importorskip("onnx")
    from lipopt_suite.cli import main

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    path = tmp_path / f"mynet{suffix}"
    if suffix == ".pt":
        torch.save(model.state_dict(), path)
    else:
        torch.onnx.export(model.eval(), torch.randn(1, 3), str(path))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()  # what torch's exporter printed
    code = main(["sandwich", path.name, "--budget", "20", "--json", "--methods",
                 "autolip,lipsdp-neuron,random,bab"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    brute = estimate(lipopt_suite.load(path), "regions").value
    assert data["lower"] <= brute * (1 + RTOL) and brute <= data["upper"] * (1 + RTOL)
