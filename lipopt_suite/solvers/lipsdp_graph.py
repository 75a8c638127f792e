"""LipSDP-Neuron over a network's computation graph, linear bypasses kept linear.

The MLP-only LipSDP methods see a CNN or a residual graph through its exact unrolling
(`unroll.py`), where every value that must cross a ReLU layer unchanged (a residual
branch, the b of a max-pool gadget max(a, b) = b + relu(a - b)) becomes pass-through units
relu(x) - relu(-x), to which LipSDP gives slopes in [0, 1] instead of the identity. Here
the program of numerics/groupsort_lmi.py is built on the graph itself
(`graph_lmi_data`): every value is a linear function of v = (x, r_1, ..., r_S), the input
and the outputs of the slope-restricted units (elementwise activations, GroupSort and
max-pooling comparators); linear ops, sums and concatenations only compose those linear
functions (with float64 error bounds), so they cost no units and no slack.
"""

from __future__ import annotations

import time

from ..bound import Bound, Domain
from ..errors import InputError
from ..network import Network
from ..numerics.groupsort_lmi import DEFAULT_MAX_DIM, graph_lmi_data
from ..registry import method
from .lipsdp_groupsort import certified_bound

# The dense SDP's solvers (SCS on this LMI) do not finish within minutes above about this
# side on 2 cores (digits_cnn, side 1,216: SCS unconverged after 270 s, its answer no
# better than the anchor's once repaired).
SDP_MAX_DIM = 1000


@method("lipsdp-graph", kind="upper", cost="solver", norms=("2",), mlp_only=False,
        domain="never", graphs=True, groupsort=True,
        summary="LipSDP-Neuron on the computation graph (residual sums, pooling, GroupSort "
                "with linear bypasses), certified a posteriori")
def lipsdp_graph(net: Network, *, norm: str = "2", domain: Domain | None = None,
                 solver: str | None = None, time_limit: float | None = None,
                 eps: float | None = None, max_dim: int = DEFAULT_MAX_DIM,
                 sdp_max_dim: int = SDP_MAX_DIM) -> Bound:
    """LipSDP-Neuron on any network held as layers or as a graph: one dense LMI in the
    input and the outputs of every slope-restricted unit, one multiplier per unit
    (elementwise activations with their slopes; each max(a, b) of a max-pooling tree and
    each GroupSort comparator a ReLU unit r = relu(a - b) with the value b + r, a - r),
    residual sums, convolutions, pooling and batch normalisation entering as exact linear
    maps. On an MLP it is the LipSDP-Neuron program; on a GroupSort MLP lipsdp-groupsort's.
    Before the solve, multipliers from a backward Schur-complement recursion over the stages
    (in the manner of ECLipsE-Fast) are certified: the value returned when the solver
    gives nothing better (a large LMI it cannot finish within time_limit), and the anchor
    that repairs solver answers slightly outside the cone (`details["anchor_value"]`).

    Reference: Fazlyab, Robey, Hassani, Morari & Pappas, "Efficient and accurate estimation
    of Lipschitz constants for deep neural networks", NeurIPS 2019 (LipSDP-Neuron); Pauli,
    Havens, Araujo, Garg, Khorrami, Allgöwer & Hu, "Novel quadratic constraints for
    extending LipSDP beyond slope-restricted activations", ICLR 2024 (GroupSort/MaxMin).
    Options: solver (a cvxpy name: clarabel, scs, cvxopt, mosek), time_limit (s, per
    solve), eps (solver tolerance), max_dim (largest LMI side accepted, default 6000; the
    program is dense, its cost grows as the cube of the side), sdp_max_dim (largest side
    handed to the SDP solver, default 1000; above it the anchor's certified value alone).
    Guarantee: certified upper bound on the global l2 constant when `certified` is True
    (multipliers checked a posteriori in float64, errors of the weight products bounded).
    """
    if norm != "2":
        raise InputError(f"lipsdp-graph bounds the l2 constant only, not norm {norm}")
    for key, value in (("max_dim", max_dim), ("sdp_max_dim", sdp_max_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"lipsdp-graph: {key} must be a positive integer, got {value!r}")
    start = time.perf_counter()
    data = graph_lmi_data(net, max_dim=max_dim, what="lipsdp-graph")
    sdp = data.dim <= sdp_max_dim
    details = {} if sdp else {"note": f"LMI side {data.dim} > sdp_max_dim {sdp_max_dim}: "
                              "the anchor multipliers only, no SDP solve"}
    return certified_bound("lipsdp-graph", data, start, solver=solver, time_limit=time_limit,
                           eps=eps, details=details, sdp=sdp)
