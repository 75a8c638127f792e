"""Chordal decomposition: cliques of the LipSDP block graph and equality of optima."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from lipopt_suite import estimate
from lipopt_suite.errors import InputError
from lipopt_suite.harness.nets import random_mlp
from lipopt_suite.numerics.lmi import network_data
from lipopt_suite.solvers import backends
from lipopt_suite.solvers.chordal import block_graph, cliques, decomposed_constraints
from lipopt_suite.solvers.lipsdp import lmi_coefficients

# The acceptance tolerance for chordal vs monolithic certified values.
CHORDAL_REL = 1e-5
# SCS at eps 1e-7 on these tiny programs lands within ~1e-6 of the optimum.
SOLVER_REL = 1e-5


def test_lipsdp_block_graph_is_a_path():
    data = network_data(random_mlp([2, 4, 5, 3, 1], seed=0))
    A, f0 = lmi_coefficients(data, "neuron")
    g = block_graph(A, f0, data.blocks)
    assert sorted(g.edges) == [(0, 1), (1, 2), (2, 3)]
    assert cliques(g) == [[0, 1], [1, 2], [2, 3]]


def test_non_chordal_pattern_is_refused():
    import networkx as nx

    with pytest.raises(InputError, match="not chordal"):
        cliques(nx.cycle_graph(4))


def _pattern_problem(blocks, pairs, seed):
    """-(f0 + A x) = rho I - S for a random symmetric S with the given block pattern:
    min rho subject to PSD is lambda_max(S)."""
    rng = np.random.default_rng(seed)
    off = np.concatenate([[0], np.cumsum(blocks)])
    N = int(off[-1])
    S = np.zeros((N, N))
    for a, b in pairs:
        block = rng.standard_normal((blocks[a], blocks[b]))
        if a == b:
            block = block + block.T
        S[off[a]:off[a + 1], off[b]:off[b + 1]] = block
        S[off[b]:off[b + 1], off[a]:off[a + 1]] = block.T
    A = sp.csr_matrix((-np.ones(N), (np.arange(N) * N + np.arange(N), np.zeros(N, int))),
                      shape=(N * N, 1))
    return A, S.ravel(), S


@pytest.mark.parametrize("pairs, expected", [
    # a path: cliques are consecutive pairs
    ([(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)], 2),
    # two triangles sharing the edge 1-2: an off-diagonal block held by two cliques
    ([(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (1, 1), (3, 3)], 2),
])
def test_decomposition_keeps_the_optimum(pairs, expected):
    import cvxpy as cp

    blocks = [2, 3, 2, 3][:1 + max(max(p) for p in pairs)]
    A, f0, S = _pattern_problem(blocks, pairs, seed=len(pairs))
    x = cp.Variable(1)
    constraints, info = decomposed_constraints(A, f0, x, blocks)
    assert len(info["cliques"]) == expected == len(constraints)
    prob = cp.Problem(cp.Minimize(x[0]), constraints)
    prob.solve(solver="SCS", **backends.sdp_options("SCS"))
    N = int(sum(blocks))
    assert x.value[0] == pytest.approx(np.linalg.eigvalsh(S.reshape(N, N))[-1], rel=SOLVER_REL)


@pytest.mark.parametrize("variant", ["neuron", "layer"])
@pytest.mark.parametrize("seed", range(2))
def test_chordal_equals_monolithic(variant, seed):
    net = random_mlp([2, 6, 6, 6, 2], seed=seed)
    mono = estimate(net, f"lipsdp-{variant}")
    chordal = estimate(net, f"lipsdp-{variant}", chordal=True)
    assert mono.certified and chordal.certified
    assert chordal.details["cliques"] == [[0, 1], [1, 2], [2, 3]]
    assert chordal.value == pytest.approx(mono.value, rel=CHORDAL_REL)


def test_chordal_on_the_fixture_with_split():
    from pathlib import Path

    from lipopt_suite.io import load

    net = load(Path(__file__).resolve().parents[1] / "fixtures" / "lipsdp_random.npz")
    b = estimate(net, "lipsdp-neuron", chordal=True, split=2)
    assert b.certified and abs(b.value - 37.668) <= 2e-3
