"""Chordal decomposition of a block-sparse LMI (used by LipSDP with `chordal=True`).

A symmetric matrix whose sparsity graph is chordal is positive semidefinite if and only if
it is a sum of PSD matrices each supported on one maximal clique (Agler, Helton, McCullough
& Rodman 1988; Vandenberghe & Andersen, "Chordal graphs and semidefinite optimization",
2015). The LipSDP matrix is block tridiagonal over the layers, so its block graph is a path
and its maximal cliques are pairs of consecutive layers: the solver sees K-1 PSD cones of
side n_k + n_{k+1} instead of one of side sum n_k, with the same optimal value (as in
Xue, Lindemann & Alur, "Chordal sparsity for Lipschitz constant estimation of deep neural
networks", CDC 2022).

Here the block graph is read off the LMI's coefficients and its cliques found with
networkx, so any chordal block pattern works. Each block pair (a, b) of the pattern shared
by several cliques is split among them with free matrix variables that sum to zero.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError


def block_graph(A: Any, f0: np.ndarray, blocks: list[int]) -> Any:
    """networkx graph on the diagonal blocks, with an edge where an off-diagonal block of
    the LMI f0 + A x has a non-zero coefficient."""
    import networkx as nx

    N = int(sum(blocks))
    owner = np.repeat(np.arange(len(blocks)), blocks)
    coo = A.tocoo()
    entries = np.concatenate([coo.row, np.flatnonzero(f0)])
    rows, cols = entries // N, entries % N
    bi, bj = owner[rows], owner[cols]
    mask = bi < bj
    g = nx.Graph()
    g.add_nodes_from(range(len(blocks)))
    g.add_edges_from({(int(i), int(j)) for i, j in zip(bi[mask], bj[mask])})
    return g


def cliques(graph: Any) -> list[list[int]]:
    """Maximal cliques of a chordal graph, each sorted, ordered by their smallest node."""
    import networkx as nx

    if graph.number_of_nodes() == 1:
        return [list(graph.nodes)]
    if not nx.is_chordal(graph):
        raise InputError("the LMI's block sparsity graph is not chordal")
    found = [sorted(c) for c in nx.chordal_graph_cliques(graph)]
    return sorted(found)


def decomposed_constraints(A: Any, f0: np.ndarray, x: Any, blocks: list[int]
                           ) -> tuple[list[Any], dict[str, Any]]:
    """cvxpy constraints equivalent to -(f0 + A x) >= 0 (reshaped row-major to N x N):
    one PSD constraint per maximal clique of the block graph."""
    import cvxpy as cp
    import scipy.sparse as sp

    N = int(sum(blocks))
    offsets = np.concatenate([[0], np.cumsum(blocks)])
    groups = cliques(block_graph(A, f0, blocks))
    # which cliques hold each block pair (a <= b); the last one listed owns its coefficients
    holders: dict[tuple[int, int], list[int]] = {}
    for c, members in enumerate(groups):
        for i, a in enumerate(members):
            for b in members[i:]:
                holders.setdefault((a, b), []).append(c)
    splits: dict[tuple[int, int], list[Any]] = {}
    for (a, b), cs in holders.items():
        if len(cs) > 1:
            shape = (blocks[a], blocks[b])
            splits[(a, b)] = [cp.Variable(shape, symmetric=(a == b)) for _ in cs[:-1]]
    A = A.tocsr()
    constraints = []
    for c, members in enumerate(groups):
        index = np.concatenate([np.arange(offsets[m], offsets[m + 1]) for m in members])
        local = np.concatenate([[0], np.cumsum([blocks[m] for m in members])])
        pos = {m: k for k, m in enumerate(members)}
        n = index.size
        rows = (index[:, None] * N + index[None, :]).ravel()
        # keep the coefficients of the block pairs this clique owns
        owned = np.zeros((n, n), dtype=bool)
        for i, a in enumerate(members):
            for b in members[i:]:
                if holders[(a, b)][-1] == c:
                    sa = slice(local[pos[a]], local[pos[a] + 1])
                    sb = slice(local[pos[b]], local[pos[b] + 1])
                    owned[sa, sb] = True
                    owned[sb, sa] = True
        keep = sp.diags(owned.ravel().astype(np.float64))
        Z = cp.reshape(-(keep @ A[rows] @ x) - owned.ravel() * f0[rows], (n, n), order="C")
        for (a, b), vs in splits.items():
            if c not in holders[(a, b)]:
                continue
            k = holders[(a, b)].index(c)
            term = vs[k] if k < len(vs) else -sum(vs)
            Pa = _embed(local[pos[a]], blocks[a], n)
            Pb = _embed(local[pos[b]], blocks[b], n)
            Z = Z + Pa @ term @ Pb.T
            if a != b:
                Z = Z + Pb @ term.T @ Pa.T
        constraints.append(Z >> 0)
    info = {"cliques": groups, "clique_dims": [int(sum(blocks[m] for m in g)) for g in groups]}
    return constraints, info


def _embed(start: int, size: int, n: int) -> Any:
    """Sparse n x size matrix placing a block at rows start..start+size."""
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(size), (np.arange(start, start + size), np.arange(size))),
                         shape=(n, size))
