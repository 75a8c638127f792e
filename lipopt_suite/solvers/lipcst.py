"""LIP-CST instances: the Max-Cut reduction showing that exact Lipschitz constants are hard.

Scaman & Virmaux (NeurIPS 2018, Theorem 2): for a graph G with Laplacian L, the
one-hidden-layer net f(x) = 1^T relu(C x) with C C^T = L + I / (2n) has
floor(L(f)^2) = max-cut(G). `lipcst_instance` builds the network of a random graph
(networkx) and `max_cut` solves the other side by brute force, so the two sides can be
compared (`lipopt lipcst`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..network import Network
from .hypercube import bit_patterns

# Max-Cut by brute force and the LIP-CST report are limited to graphs this large.
MAX_LIPCST_NODES = 22


# Largest LIP-CST instance built (the network alone, without the brute-force side).
MAX_INSTANCE_NODES = 2000


# Integer edge weights of weighted LIP-CST graphs are drawn from 1..MAX_EDGE_WEIGHT.
MAX_EDGE_WEIGHT = 5


def check_lipcst(nodes: Any, p: Any, limit: int = MAX_INSTANCE_NODES) -> tuple[int, float]:
    if isinstance(nodes, bool) or not isinstance(nodes, (int, np.integer)):
        raise InputError(f"lipcst: --nodes must be an integer, got {nodes!r}")
    if not 2 <= int(nodes) <= limit:
        why = (" (Max-Cut is solved by brute force over 2^N cuts)"
               if limit == MAX_LIPCST_NODES else "")
        raise InputError(f"lipcst: --nodes must be between 2 and {limit}{why}, got {nodes}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise InputError(f"lipcst: --p must be an edge probability in [0, 1], got {p:g}")
    return int(nodes), p


def lipcst_graph(nodes: int, p: float = 0.5, seed: int = 0, weighted: bool = False):
    """G(n, p) random graph (networkx); weighted graphs get integer weights 1..5."""
    import networkx as nx

    nodes, p = check_lipcst(nodes, p)
    graph = nx.gnp_random_graph(nodes, p, seed=seed)
    rng = np.random.default_rng(seed)
    for u, v in graph.edges():
        graph[u][v]["weight"] = int(rng.integers(1, MAX_EDGE_WEIGHT + 1)) if weighted else 1
    return graph


def lipcst_network(graph: Any) -> Network:
    """f(x) = 1^T relu(C x) with C C^T = L + I / (2n), L the weighted graph Laplacian.

    On the region of pattern s the gradient is C^T s, so ||grad||^2 = s^T L s + |s| / (2n):
    the cut weight of {i : s_i = 1} plus at most 1/2. C is invertible, so every pattern is
    reachable and L(f)^2 = max-cut(G) + (a perturbation in (0, 1/2]).
    """
    import networkx as nx

    n = graph.number_of_nodes()
    lap = nx.laplacian_matrix(graph, nodelist=sorted(graph.nodes()), weight="weight")
    A = lap.toarray().astype(np.float64) + np.eye(n) / (2 * n)
    C = np.linalg.cholesky(A)
    return Network.from_mlp([C, np.ones((1, n))], [np.zeros(n), np.zeros(1)])


def lipcst_instance(nodes: int, p: float = 0.5, seed: int = 0, weighted: bool = False
                    ) -> tuple[Network, Any]:
    """The LIP-CST instance of a G(nodes, p) graph: (network, networkx graph)."""
    graph = lipcst_graph(nodes, p, seed, weighted)
    return lipcst_network(graph), graph


def max_cut(graph: Any) -> tuple[float, np.ndarray]:
    """Maximum cut weight by brute force over the 2^(n-1) cuts (node n-1 on side 0):
    (weight, 0/1 side of each node)."""
    import networkx as nx

    n = graph.number_of_nodes()
    lap = nx.laplacian_matrix(graph, nodelist=sorted(graph.nodes()), weight="weight").toarray()
    lap = lap.astype(np.float64)
    best, best_s = -1.0, np.zeros(n)
    low = min(n - 1, 16)
    lo_bits = bit_patterns(low)  # (2^low, low)
    quad_lo = np.einsum("pi,ij,pj->p", lo_bits, lap[:low, :low], lo_bits)
    for h in range(2 ** (n - 1 - low)):
        hb = np.array([(h >> j) & 1 for j in range(n - 1 - low)], dtype=np.float64)
        s_hi = np.concatenate([hb, [0.0]])
        hi_idx = slice(low, n)
        cross = lo_bits @ (lap[:low, hi_idx] @ s_hi)
        vals = quad_lo + 2 * cross + s_hi @ lap[hi_idx, hi_idx] @ s_hi
        k = int(np.argmax(vals))
        if vals[k] > best:
            best, best_s = float(vals[k]), np.concatenate([lo_bits[k], s_hi])
    return best, best_s
