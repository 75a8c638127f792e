"""The CNN table of Scaman & Virmaux: the networks' shapes, the shipped problems, and the
table written beside the published one from records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lipopt_suite import estimate, from_torch, load_problem
from lipopt_suite.harness.cnn_table import (
    CNN_FAMILY,
    CNN_LAYERS,
    CNN_PUBLISHED,
    cnn_markdown,
    scaman_cnn_module,
)
from lipopt_suite.harness.nets import resnet18_module
from lipopt_suite.harness.report import analyse
from lipopt_suite.harness.train import digits_resnet_module

PROBLEMS = Path(__file__).resolve().parents[2] / "problems"


@pytest.mark.parametrize("layers", CNN_LAYERS)
def test_cnns_have_the_tables_depths(layers):
    net = from_torch(scaman_cnn_module(layers), (1, 8, 8))
    assert net.num_linear == layers and net.output_shape == (10,) and not net.is_graph


def test_the_shipped_cnn_problems_load_with_their_test_images():
    for layers in CNN_LAYERS:
        net, extras = load_problem(PROBLEMS / "scaman2018-cnn" / f"cnn{layers}.npz")
        assert net.num_linear == layers and extras["X"].shape == (300, 64)
    net, extras = load_problem(PROBLEMS / "graphs" / "digits_resnet.npz")
    assert net.is_graph and sum(len(n.inputs) == 2 for n in net.nodes) == 2
    low = estimate(net, "data", X=extras["X"][:20])
    assert 0 < low.value <= estimate(net, "autolip").value


def test_residual_architectures_trace_into_graphs():
    net = from_torch(digits_resnet_module(), (1, 8, 8))
    assert net.is_graph and net.output_shape == (10,)
    resnet = from_torch(resnet18_module(width=4), (3, 32, 32))
    # 8 basic blocks, each one residual sum; 3 of them with a downsampling shortcut
    adds = [n for n in resnet.nodes if len(n.inputs) == 2]
    assert len(adds) == 8 and resnet.num_linear == 21


def record(layers: int, method: str, value: float, kind: str = "upper") -> dict:
    return {"key": f"cnn{layers}|{method}|2|None", "problem": f"cnn{layers}", "method": method,
            "norm": "2", "radius": None, "kind": kind, "value": value, "certified": True,
            "status": "ok", "quantity": "global", "seconds": 1.0, "details": {},
            "family": CNN_FAMILY, "x": layers}


def test_the_table_sits_beside_the_published_one_with_the_ratio():
    records = []
    for i, layers in enumerate(CNN_LAYERS):
        records += [record(layers, "autolip", 10.0 * (i + 2)),
                    record(layers, "seqlip-greedy", 10.0, "estimate"),
                    record(layers, "data", 1.0 + i, "lower")]
    alexnet = {"seed": 0, "width": 1.0, "top_k": 64, "autolip": 8.0, "seqlip-greedy": 2.0,
               "ratio": 4.0}
    text = cnn_markdown(analyse(records), alexnet)
    assert "| 10 | 50 | 10* | 5 | 4 |" in text  # ours: AutoLip, Greedy SL, ratio, Dataset
    assert f"| 4 | {CNN_PUBLISHED[4]['autolip']:g} |" in text
    assert "## AlexNet" in text and "| ours | 8 | 2* | 4 |" in text
    assert cnn_markdown(analyse([record(4, "autolip", 1.0) | {"family": "other"}])) is None


def test_alexnet_shape():
    from lipopt_suite.harness.nets import alexnet_module

    net = from_torch(alexnet_module(width=1 / 16, classes=7), (3, 224, 224))
    assert net.num_linear == 8 and net.output_shape == (7,)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224))
    assert np.all(np.isfinite(net(x)))
