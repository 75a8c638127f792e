"""The command line: outputs, and one line with exit code 2 for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lipopt_suite import save
from lipopt_suite.cli import main
from lipopt_suite.harness.nets import random_mlp


@pytest.fixture
def relu_net(tmp_path):
    return str(save(random_mlp([3, 5, 2], seed=0), tmp_path / "net.npz",
                    X=np.random.default_rng(0).standard_normal((20, 3))))


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_methods_json(capsys):
    code, out, _ = run(capsys, "methods", "--json")
    names = {m["name"] for m in json.loads(out)}
    assert code == 0 and {"autolip", "regions", "random"} <= names


def test_bound_json_fields(capsys, relu_net):
    code, out, _ = run(capsys, "bound", relu_net, "--method", "autolip", "--json")
    data = json.loads(out)
    assert code == 0
    assert set(data) >= {"method", "kind", "value", "norm", "certified", "seconds", "status",
                         "domain", "details"}
    assert data["kind"] == "upper" and data["certified"] is True


def test_bound_with_domain_and_data(capsys, relu_net, tmp_path):
    center = tmp_path / "c.npy"
    np.save(center, np.zeros(3))
    code, out, _ = run(capsys, "bound", relu_net, "--method", "random", "--center", str(center),
                       "--radius", "0.5", "--json", "-o", "samples=50")
    data = json.loads(out)
    assert code == 0 and data["quantity"] == "local" and data["domain"]["kind"] == "ball"
    code, out, _ = run(capsys, "bound", relu_net, "--method", "data", "--json")
    assert code == 0 and json.loads(out)["details"]["points"] == 20


def test_time_limit_runs_in_a_child(capsys, relu_net):
    code, out, _ = run(capsys, "bound", relu_net, "--method", "frobenius", "--time-limit", "60",
                       "--json")
    assert code == 0 and json.loads(out)["status"] == "ok"


def write_truncated(tmp_path):
    p = save(random_mlp([2, 3, 1]), tmp_path / "t.npz")
    p.write_bytes(p.read_bytes()[:100])
    return str(p)


def write_pickled(tmp_path):
    p = tmp_path / "p.npz"
    np.savez(p, W0=np.array([None, 1], dtype=object))
    return str(p)


def write_nan(tmp_path):
    p = tmp_path / "n.npz"
    np.savez(p, W0=np.array([[np.inf, 1.0]]), b0=np.zeros(1))
    return str(p)


def write_mismatch(tmp_path):
    p = tmp_path / "m.npz"
    np.savez(p, W0=np.ones((3, 2)), b0=np.zeros(3), W1=np.ones((1, 2)), b1=np.zeros(1))
    return str(p)


def write_empty(tmp_path):
    p = tmp_path / "e.npz"
    np.savez(p, X=np.zeros((2, 2)))
    return str(p)


def write_tanh(tmp_path):
    return str(save(random_mlp([2, 3, 1], activation="tanh"), tmp_path / "tanh.npz"))


def write_bad_member(tmp_path):
    import zipfile

    p = tmp_path / "bm.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("W0.npy", b"not an array at all")
    return str(p)


def write_random_bytes(tmp_path):
    p = tmp_path / "r.npz"
    p.write_bytes(np.random.default_rng(0).bytes(256))
    return str(p)


def write_huge(tmp_path):
    p = tmp_path / "h.npz"
    np.savez(p, W0=np.full((3, 2), 1e160), b0=np.zeros(3), W1=np.ones((1, 3)), b1=np.zeros(1))
    return str(p)


def write_bad_x(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, W0=np.ones((3, 2)), b0=np.zeros(3), W1=np.ones((1, 3)), b1=np.zeros(1),
             X=np.zeros((4, 5)))
    return str(p)


BAD = [
    ("missing file", lambda t, n: ["bound", str(t / "none.npz"), "--method", "autolip"],
     "no such file"),
    ("truncated npz", lambda t, n: ["bound", write_truncated(t), "--method", "autolip"],
     "not a readable .npz"),
    ("pickle npz", lambda t, n: ["bound", write_pickled(t), "--method", "autolip"], "unpickling"),
    ("nan weights", lambda t, n: ["bound", write_nan(t), "--method", "autolip"], "NaN or inf"),
    ("shape mismatch", lambda t, n: ["bound", write_mismatch(t), "--method", "autolip"],
     "columns"),
    ("empty network", lambda t, n: ["bound", write_empty(t), "--method", "autolip"],
     "no weight arrays"),
    ("unknown method", lambda t, n: ["bound", n, "--method", "nope"], "valid methods"),
    ("unsupported norm", lambda t, n: ["bound", n, "--method", "frobenius", "--norm", "inf"],
     "does not support norm inf"),
    ("bad norm", lambda t, n: ["bound", n, "--method", "autolip", "--norm", "3"], "unknown norm"),
    ("domain without centre", lambda t, n: ["bound", n, "--method", "random", "--domain", "box"],
     "need --center"),
    ("radius without centre", lambda t, n: ["bound", n, "--method", "random", "--radius", "1"],
     "needs both"),
    ("domain-only method", lambda t, n: ["bound", n, "--method", "clever"], "needs a domain"),
    ("tanh to relu-only", lambda t, n: ["bound", write_tanh(t), "--method", "regions"], "tanh"),
    ("unknown option", lambda t, n: ["bound", n, "--method", "autolip", "-o", "speed=3"],
     "no option"),
    ("solver for solverless", lambda t, n: ["bound", n, "--method", "autolip", "--solver", "SCS"],
     "uses no solver"),
    ("missing argument", lambda t, n: ["bound", n], "--method"),
    ("npz member not an array", lambda t, n: ["bound", write_bad_member(t), "--method",
                                             "autolip"], "not a .npy array"),
    ("random bytes", lambda t, n: ["bound", write_random_bytes(t), "--method", "autolip"],
     "no zip signature"),
    ("overflowing weights", lambda t, n: ["bound", write_huge(t), "--method", "liplt"],
     "overflow"),
    ("data of the wrong width", lambda t, n: ["bound", write_bad_x(t), "--method", "data"],
     "'X' has shape (4, 5)"),
    ("option of the wrong type", lambda t, n: ["bound", n, "--method", "regions", "-o",
                                               "max_regions=abc"], "must be an integer"),
    ("negative count", lambda t, n: ["bound", n, "--method", "random", "-o", "samples=-5"],
     "> 0"),
    ("negative seed", lambda t, n: ["bound", n, "--method", "random", "-o", "seed=-1"],
     ">= 0"),
    ("option time limit", lambda t, n: ["bound", n, "--method", "regions", "-o",
                                        "time_limit=-5"], "> 0"),
    ("device through -o", lambda t, n: ["bound", n, "--method", "autolip", "-o", "device=tpu"],
     "cpu or cuda"),
    ("data option of the wrong width", lambda t, n: ["bound", n, "--method", "random", "-o",
                                                     "X=[[1,2,3,4,5,6,7]]"], "columns"),
    ("unknown command", lambda t, n: ["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("label, argv, match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, relu_net, label, argv, match):
    code, out, err = run(capsys, *argv(tmp_path, relu_net))
    assert code == 2, (label, err)
    assert err.count("\n") == 1 and err.startswith("lipopt: error: "), err
    assert match in err, err
    assert "Traceback" not in err


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lipopt_suite.cli", "bound",
                           str(tmp_path / "x.npz"), "--method", "autolip"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file" in proc.stderr


def test_ci_script_runs_the_readme_test_command():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = readme.split("# 2. install and run the tests", 1)[1].split("```", 1)[0]
    command = block.strip().splitlines()[0].strip()
    assert "pytest" in command
    assert command in (root / ".ci" / "run").read_text()
