"""`lipopt lipcst`: both sides of the Max-Cut -> LIP-CST reduction on one graph.

Max-Cut by brute force, L(f) by the exact `hypercube` method, the check
floor(L(f)^2) = max-cut, and LipSDP-Neuron beside it (`solvers.lipcst` builds the instance).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

from ..bound import to_jsonable
from ..errors import InputError
from ..registry import estimate, load_all
from ..solvers.lipcst import (
    MAX_EDGE_WEIGHT,
    MAX_LIPCST_NODES,
    check_lipcst,
    lipcst_instance,
    max_cut,
)


def lipcst_report(nodes: int, p: float = 0.5, seed: int = 0, *, weighted: bool = False,
                  time_limit: float | None = None) -> dict[str, Any]:
    """Both sides of the reduction on one graph: Max-Cut by brute force, L(f) by `hypercube`,
    the check floor(L(f)^2) = max-cut, and LipSDP-Neuron (when registered) with its ratio."""
    check_lipcst(nodes, p, MAX_LIPCST_NODES)
    net, graph = lipcst_instance(nodes, p, seed, weighted)
    t0 = time.perf_counter()
    cut, side = max_cut(graph)
    cut_seconds = time.perf_counter() - t0
    exact = estimate(net, "hypercube", time_limit=time_limit)
    L = exact.value
    report: dict[str, Any] = {
        "nodes": graph.number_of_nodes(), "p": float(p), "seed": int(seed),
        "weighted": bool(weighted),
        "edges": [[int(u), int(v), int(w)] for u, v, w in graph.edges(data="weight")],
        "max_cut": cut, "cut_side": [int(i) for i in np.nonzero(side)[0]],
        "max_cut_seconds": cut_seconds,
        "lipschitz": L, "lipschitz_kind": exact.kind, "lipschitz_squared": L * L,
        "hypercube_seconds": exact.seconds,
        "pattern": exact.details["witness"]["pattern"].tolist(),
        "floor_lipschitz_squared": math.floor(L * L),
        "check": exact.kind == "exact" and math.floor(L * L) == round(cut),
    }
    lipsdp: dict[str, Any] = {"method": "lipsdp-neuron"}
    if "lipsdp-neuron" not in load_all():
        lipsdp.update(status="unavailable", message="method lipsdp-neuron is not registered")
    else:
        try:
            b = estimate(net, "lipsdp-neuron", norm="2")
            lipsdp.update(value=b.value, kind=b.kind, certified=b.certified,
                          status=b.status, seconds=b.seconds,
                          ratio=b.value / L if L > 0 else math.nan,
                          ratio_squared=(b.value / L) ** 2 if L > 0 else math.nan)
        except InputError as exc:
            lipsdp.update(status="unavailable", message=str(exc))
    report["lipsdp"] = lipsdp
    return report


def cli_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes", type=int, required=True, help="number of graph nodes")
    parser.add_argument("--p", type=float, default=0.5, help="edge probability (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="graph seed (default 0)")
    parser.add_argument("--weighted", action="store_true",
                        help=f"integer edge weights 1..{MAX_EDGE_WEIGHT}")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds for the exact Lipschitz computation")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cli_run(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    rep = lipcst_report(args.nodes, args.p, args.seed, weighted=args.weighted,
                        time_limit=args.time_limit)
    if args.json:
        print(json.dumps(to_jsonable(rep)))
        return 0 if rep["check"] else 1
    edges = ", ".join(f"{u}-{v}" + (f"({w})" if rep["weighted"] else "")
                      for u, v, w in rep["edges"]) or "none"
    print(f"graph: G({rep['nodes']}, {rep['p']:g}), seed {rep['seed']}, "
          f"{len(rep['edges'])} edges: {edges}")
    print(f"max-cut (brute force): {rep['max_cut']:g}  side {rep['cut_side']}")
    print(f"L(f) ({rep['lipschitz_kind']}, hypercube): {rep['lipschitz']:.12g}  "
          f"L(f)^2 = {rep['lipschitz_squared']:.12g}")
    verdict = "holds" if rep["check"] else "FAILS"
    print(f"check floor(L(f)^2) = {rep['floor_lipschitz_squared']} = max-cut: {verdict}")
    sdp = rep["lipsdp"]
    if "value" in sdp:
        print(f"LipSDP-Neuron: {sdp['value']:.12g}  ratio to L(f) {sdp['ratio']:.6g} "
              f"(squared {sdp['ratio_squared']:.6g}), status {sdp['status']}")
    else:
        print(f"LipSDP-Neuron: skipped ({sdp['message']})")
    return 0 if rep["check"] else 1
