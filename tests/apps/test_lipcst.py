"""The Max-Cut -> LIP-CST reduction: floor(L(f)^2) = max-cut on concrete graphs, and the
`lipopt lipcst` command."""

from __future__ import annotations

import itertools
import json
import math

import networkx as nx
import numpy as np
import pytest

from lipopt_suite import InputError
from lipopt_suite.apps.lipcst import lipcst_report
from lipopt_suite.cli import main
from lipopt_suite.registry import METHODS, load_all
from lipopt_suite.solvers.lipcst import lipcst_instance, max_cut


def cut_by_networkx(graph: nx.Graph) -> float:
    nodes = sorted(graph.nodes())
    best = 0.0
    for r in range(len(nodes) + 1):
        for side in itertools.combinations(nodes, r):
            best = max(best, nx.cut_size(graph, side, weight="weight"))
    return best



@pytest.mark.parametrize("nodes, p, seed, weighted", [
    (5, 0.5, 0, False), (6, 0.3, 1, False), (7, 0.7, 2, True), (8, 0.5, 3, False),
    (9, 0.4, 4, True), (10, 0.5, 5, False), (10, 0.9, 6, True), (11, 0.2, 7, False),
    (12, 0.5, 8, False), (12, 0.6, 9, True), (4, 0.0, 10, False)])
def test_floor_of_squared_constant_is_max_cut(nodes, p, seed, weighted):
    rep = lipcst_report(nodes, p, seed, weighted=weighted)
    assert rep["lipschitz_kind"] == "exact"
    assert rep["check"] and rep["floor_lipschitz_squared"] == rep["max_cut"]
    _, graph = lipcst_instance(nodes, p, seed, weighted)
    if nodes <= 10:
        assert rep["max_cut"] == cut_by_networkx(graph)
    # the perturbation I/(2n) adds |s|/(2n) in (0, 1/2]
    assert 0 < rep["lipschitz_squared"] - rep["max_cut"] <= 0.5 + 1e-12



def test_lipcst_network_gradient_is_C_transpose_s():
    net, graph = lipcst_instance(6, 0.5, 1)
    (C, _), _, _ = net.mlp()
    lap = nx.laplacian_matrix(graph, nodelist=range(6)).toarray()
    assert np.allclose(C @ C.T, lap + np.eye(6) / 12, atol=1e-12)
    cut, side = max_cut(graph)
    assert side @ lap @ side == pytest.approx(cut)



def test_lipsdp_is_compared_when_registered(monkeypatch):
    load_all()
    if "lipsdp-neuron" in METHODS:
        rep = lipcst_report(6, 0.5, 2)
        assert rep["lipsdp"]["ratio"] >= 1 - 1e-6  # an upper bound over the exact value
    monkeypatch.delitem(METHODS, "lipsdp-neuron", raising=False)
    rep = lipcst_report(6, 0.5, 2)
    assert rep["lipsdp"]["status"] == "unavailable" and rep["check"]



@pytest.mark.parametrize("kwargs, match", [({"nodes": 1}, "between 2"),
                                           ({"nodes": 40}, "brute force"),
                                           ({"nodes": 5, "p": 1.5}, "probability")])
def test_bad_lipcst_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        lipcst_report(**kwargs)



def test_cli_lipcst(capsys):
    assert main(["lipcst", "--nodes", "7", "--p", "0.5", "--seed", "3", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["check"] and rep["floor_lipschitz_squared"] == rep["max_cut"]
    assert math.isclose(rep["lipschitz"] ** 2, rep["lipschitz_squared"])
    assert main(["lipcst", "--nodes", "6"]) == 0
    assert "max-cut" in capsys.readouterr().out
    assert main(["lipcst", "--nodes", "0"]) == 2
    assert "between 2" in capsys.readouterr().err
    assert main(["lipcst", "--nodes", "4", "--seed", "-1"]) == 2
    assert "--seed must be >= 0" in capsys.readouterr().err
