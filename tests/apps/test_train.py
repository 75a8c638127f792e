"""`lipopt train`: a run writes the network and its record; bad input is one line and
exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lipopt_suite import estimate, load_problem
from lipopt_suite.cli import main

# the certified bound of a designed net may meet its budget to a few ulps
CERT_RTOL = 1e-9


@pytest.fixture()
def toy(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    X = 2.0 * y[:, None] + rng.standard_normal((40, 4))
    np.savez(tmp_path / "toy.npz", X=X, y=y)
    return tmp_path / "toy.npz"


def test_train_writes_the_net_and_the_run(toy, tmp_path, capsys) -> None:
    out = tmp_path / "net.npz"
    code = main(["train", "--regulariser", "projection-l2", "--strength", "0.8", "--hidden",
                 "6,6", "--epochs", "2", "--data", str(toy), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    record = json.loads(captured.out)  # exactly one JSON object on stdout
    assert record["regulariser"] == "projection-l2" and record["sizes"] == [4, 6, 6, 2]
    assert record["design_bound"] == 0.8 and record["net"] == str(out)
    saved = json.loads((tmp_path / "net.json").read_text())
    assert saved["test_accuracy"] == record["test_accuracy"]
    net, extras = load_problem(out)
    assert extras["X"].shape == (8, 4)
    b = estimate(net, "lipsdp-neuron")
    assert b.certified and b.value <= 0.8 * (1 + CERT_RTOL)


def test_train_prints_a_summary(toy, tmp_path, capsys) -> None:
    code = main(["train", "--regulariser", "gradient-penalty", "--strength", "2",
                 "--hidden", "4", "--epochs", "1", "--data", str(toy), "--out",
                 str(tmp_path / "gp.npz")])
    out = capsys.readouterr().out
    assert code == 0
    assert "gradient-penalty (strength 2)" in out and "an estimate" in out


@pytest.mark.parametrize("args, words", [
    (["--regulariser", "dropout"], "unknown regulariser"),
    (["--regulariser", "clipping", "--strength", "0"], "must lie in"),
    (["--regulariser", "none", "--strength", "1"], "strength 0"),
    (["--regulariser", "gradient-penalty", "--strength", "nan"], "finite"),
    (["--hidden", "4,x"], "comma-separated"),
    (["--hidden", "0"], "positive integers"),
    (["--epochs", "0"], "epochs"),
    (["--device", "tpu"], "device"),
    (["--model", "cnn"], "do not match the CNN"),
    (["--regulariser", "bjorck", "--hidden", "5"], "group size"),
    (["--regulariser", "spectral", "--model", "cnn"], "dense layers"),
])
def test_refusals_are_one_line_exit_2(toy, tmp_path, capsys, args, words) -> None:
    code = main(["train", *args, "--data", str(toy), "--out", str(tmp_path / "x.npz")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and words in err
    assert not (tmp_path / "x.npz").exists()


def test_bad_files_are_refused(tmp_path, capsys) -> None:
    (tmp_path / "bad.npz").write_text("not an archive")
    np.savez(tmp_path / "obj.npz", X=np.array([[1, 2]], dtype=object), y=np.zeros(1))
    for data, words in (("bad.npz", "not an .npz"), ("missing.npz", "no such file"),
                        ("obj.npz", "plain arrays")):
        code = main(["train", "--data", str(tmp_path / data), "--out",
                     str(tmp_path / "x.npz")])
        assert code == 2 and words in capsys.readouterr().err
    code = main(["train", "--out", str(tmp_path / "x.pt")])
    assert code == 2 and ".npz" in capsys.readouterr().err
