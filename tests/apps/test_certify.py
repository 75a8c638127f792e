"""Certified l2 robustness radii (`lipopt certify`): no attack succeeds inside them, they are
reported beside the global-bound radius, and bad input ends in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lipopt_suite.apps import certify as C
from lipopt_suite.cli import main
from lipopt_suite.core import attack
from lipopt_suite.errors import InputError
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.io import load_problem, save
from lipopt_suite.network import Network

from ..core.test_local import NETS, SECANT_TOL

DIGITS = Path(__file__).resolve().parents[2] / "problems" / "digits"


def _digits(name: str) -> tuple[Network, np.ndarray, np.ndarray]:
    path = DIGITS / f"digits_{name}.npz"
    net, extras = load_problem(path)
    with np.load(path, allow_pickle=False) as data:
        labels = data["y"]
    return net, extras["X"], labels



@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_no_attack_inside_the_certified_radius_on_digits(name: str) -> None:
    net, X, y = _digits(name)
    pred = net(X.reshape(-1, *net.input_shape)).argmax(1)
    points = [i for i in range(len(X)) if pred[i] == y[i]][:3]
    assert len(points) == 3
    for i in points:
        cert = C.certified_radius(net, X[i], int(y[i]))
        assert cert.certified and cert.margin > 0
        assert 0 < cert.global_radius <= cert.local_radius
        # the bound at the certified radius satisfies Proposition 6
        assert math.sqrt(2) * cert.local_bound * cert.local_radius < cert.margin
        loss, x = attack.pgd_l2(net, X[i], int(y[i]), cert.local_radius, restarts=64,
                                steps=150, seed=i)
        assert np.linalg.norm(x - X[i]) <= cert.local_radius * (1 + 1e-12)
        assert loss < 0, (name, i, loss)
        found = attack.pgd_min_perturbation(net, X[i], int(y[i]), restarts=16, steps=60,
                                            start=2 * cert.local_radius, seed=i)
        assert found.found and found.radius > cert.local_radius



def test_certify_reports_attacks_and_lower_bound() -> None:
    net, X, y = _digits("mlp")
    cert = C.certify(net, X[0], int(y[0]), restarts=8, steps=40)
    assert cert.attacks["pgd"]["radius"] > cert.local_radius
    assert cert.attacks["fgsm"]["radius"] > cert.local_radius
    assert 0 < cert.lower["value"] <= cert.local_bound
    text = C.format_certificate(cert, "digits_mlp")
    assert "local radius" in text and "global radius" in text and "PGD" in text



def test_misclassified_centre_has_radius_zero() -> None:
    net, X, y = _digits("mlp")
    wrong = (int(np.argmax(net(X[0].reshape(net.input_shape)))) + 1) % 10
    cert = C.certified_radius(net, X[0], wrong)
    assert cert.margin < 0 and cert.local_radius == 0 and cert.global_radius == 0



def test_sweep_rows_are_sandwiched() -> None:
    _, net, x0 = NETS[7]
    out = net(x0).reshape(-1)
    rows = C.sweep(net, x0, [1e-3, 0.1, 1.0], label=int(np.argmax(out)) if out.size > 1 else None,
                   lower=("random",))
    assert [r["radius"] for r in rows] == [1e-3, 0.1, 1.0]
    for r in rows:
        assert r["random"] <= r["local"] * (1 + SECANT_TOL) and r["local"] <= r["autolip"]



def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err



def test_cli_certify_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    net = DIGITS / "digits_mlp.npz"
    _, X, y = _digits("mlp")
    np.save(tmp_path / "c.npy", X[1])
    rc, out, _ = _cli(capsys, "certify", str(net), "--center", str(tmp_path / "c.npy"),
                      "--label", str(int(y[1])), "--json", "--restarts", "4", "--steps", "20")
    assert rc == 0
    rec = json.loads(out)
    assert rec["global"]["radius"] <= rec["local"]["radius"] < rec["attacks"]["pgd"]["radius"]
    rc, out, _ = _cli(capsys, "certify", str(net), "--label", str(int(y[0])), "--no-attack",
                      "--no-lower")
    assert rc == 0 and "local radius" in out  # the centre stored in the .npz
    np.save(tmp_path / "short.npy", X[1][:10])
    tanh = tmp_path / "tanh.npz"
    save(random_mlp([64, 5, 10], 0, activation="tanh"), tanh)
    bad = [("certify", str(net), "--center", str(tmp_path / "short.npy"), "--label", "1"),
           ("certify", str(net), "--label", "10"),
           ("certify", str(net), "--label", "-1"),
           ("certify", str(tanh), "--center", str(tmp_path / "c.npy"), "--label", "1"),
           ("bound", str(net), "--method", "local", "--center", str(tmp_path / "c.npy"),
            "--radius", "0"),
           ("bound", str(net), "--method", "local", "--center", str(tmp_path / "c.npy"),
            "--radius", "-0.5"),
           ("bound", str(tanh), "--method", "local", "--center", str(tmp_path / "c.npy"),
            "--radius", "0.1"),
           ("bound", str(net), "--method", "local", "--center", str(tmp_path / "short.npy"),
            "--radius", "0.1")]
    for argv in bad:
        rc, out, err = _cli(capsys, *argv)
        assert rc == 2, argv
        assert err.count("\n") == 1 and err.startswith("lipopt: error:"), err


def test_a_label_out_of_range_is_refused() -> None:
    _, net, x0 = NETS[0]
    with pytest.raises(InputError, match="out of range"):
        C.certified_radius(net, x0, 7)


def test_cli_bound_builds_the_anchored_ball(tmp_path: Path, capsys: pytest.CaptureFixture
                                            ) -> None:
    _, X, _ = _digits("cnn")
    np.save(tmp_path / "c.npy", X[2])
    rc, out, _ = _cli(capsys, "bound", str(DIGITS / "digits_cnn.npz"), "--method", "local",
                      "--center", str(tmp_path / "c.npy"), "--radius", "0.05", "--json")
    assert rc == 0
    rec = json.loads(out)
    assert rec["quantity"] == "anchored" and rec["certified"] and rec["value"] > 0
