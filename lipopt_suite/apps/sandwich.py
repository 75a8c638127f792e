"""`lipopt sandwich NET`: the tightest certified interval on a network's Lipschitz constant
within a time budget (`harness.sandwich.sandwich`), from any folder and any network file."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from ..bound import Bound, Domain
from ..errors import InputError
from ..harness.sandwich import Sandwich, sandwich, short_vector
from ..io import load_center, load_problem


def cli_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("net", help="network file (.npz, .pt/.pth state dict, .nnet, .onnx)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds for the whole run (default 60)")
    parser.add_argument("--norm", default="2", help="2, inf or 1 (default 2)")
    parser.add_argument("--center", default=None,
                        help="centre of the domain (.npy, or .npz with 'center'; default: the "
                             "'center' stored in the network's .npz when --radius is given)")
    parser.add_argument("--radius", type=float, default=None,
                        help="radius of the domain: bound the constant over the ball or box "
                             "instead of the global one")
    parser.add_argument("--domain", choices=("ball", "box"), default=None,
                        help="domain shape (default: ball)")
    parser.add_argument("--anchored", action="store_true",
                        help="bound the constant anchored at the centre (Avant & Morgansen) "
                             "over the ball")
    parser.add_argument("--methods", default=None,
                        help="comma-separated method names to choose from (default: every "
                             "applicable registered method)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress lines on stderr")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cli_run(args: argparse.Namespace) -> int:
    budget = args.budget
    if not (math.isfinite(budget) and budget > 0):
        raise InputError(f"--budget must be a positive number of seconds, got {budget}")
    net, extras = load_problem(args.net)
    domain = _domain(args, net.input_dim, extras)
    names = None
    if args.methods is not None:
        names = [t.strip() for t in args.methods.split(",") if t.strip()]
        if not names:
            raise InputError("--methods is empty")
    progress = None
    if not (args.json or args.quiet):
        def progress(bound: Bound, so_far: Sandwich) -> None:
            print(f"  {_bound_line(bound)}   -> [{so_far.lower.value:.6g}, "
                  f"{so_far.upper.value:.6g}]", file=sys.stderr, flush=True)
    result = sandwich(net, budget=budget, norm=args.norm, domain=domain, methods=names,
                      X=extras.get("X"), progress=progress)
    if args.json:
        print(json.dumps({"net": args.net, **result.to_dict()}))
    else:
        print(format_sandwich(result, args.net))
    return 130 if result.status == "interrupted" else 0


def _domain(args: argparse.Namespace, input_dim: int, extras: dict[str, Any]) -> Domain | None:
    if args.radius is None:
        if args.center is not None or args.domain is not None or args.anchored:
            raise InputError("--center/--domain/--anchored need --radius R")
        return None
    if not (math.isfinite(args.radius) and args.radius > 0):
        raise InputError(f"--radius must be positive and finite, got {args.radius}")
    if args.center is not None:
        center = load_center(args.center, input_dim)
    elif "center" in extras:
        center = np.asarray(extras["center"], dtype=np.float64).reshape(-1)
    else:
        raise InputError(f"{args.net} stores no 'center': give --center FILE")
    if (args.domain or "ball") == "box":
        if args.anchored:
            raise InputError("--anchored needs a ball domain")
        return Domain.box(center, args.radius)
    return Domain.ball(center, args.radius, anchored=args.anchored)


def _bound_line(b: Bound) -> str:
    value = f"{b.value:.6g}" if math.isfinite(b.value) else "—"
    cert = "" if b.certified or b.status != "ok" else ", not certified"
    status = "" if b.status == "ok" else f", {b.status}"
    return f"{b.method:<16} {b.kind:<8} {value:>12}  ({b.seconds:.3g} s{cert}{status})"


def format_sandwich(s: Sandwich, name: str = "") -> str:
    """The human-readable `lipopt sandwich` report."""
    where = "global"
    if s.domain is not None:
        where = f"over the {s.domain.kind} of radius {float(s.domain.radius.max()):g}"
        if s.domain.anchored:
            where = f"anchored at the centre, {where}"
    head = f"{name}: " if name else ""
    lo, up = s.interval
    lines = [f"{head}l{s.norm} Lipschitz constant ({where})",
             f"  certified interval  [{lo:.10g}, {up:.10g}]"
             + (f"   upper / lower = {s.ratio:.6g}" if lo > 0 and math.isfinite(up) else "")]
    if s.exact is not None:
        lines.append(f"  exact value         {s.exact:.10g}   ({', '.join(s.upper_methods)})")
    lines.append(f"  lower end by        {', '.join(s.lower_methods) or 'none (0)'}")
    lines.append(f"  upper end by        {', '.join(s.upper_methods) or 'none (inf)'}")
    w = s.witness
    if w is not None and w.get("x") is not None:
        x = np.asarray(w["x"], dtype=np.float64).reshape(-1)
        if w.get("y") is not None:
            y = np.asarray(w["y"], dtype=np.float64).reshape(-1)
            lines.append(f"  witness pair        x = {short_vector(x)}, y = {short_vector(y)}, "
                         f"||x - y|| = {np.linalg.norm(x - y, ord=_ord(s.norm)):.3g}")
        else:
            lines.append(f"  witness point       x = {short_vector(x)} (its region's slope)")
    verdict = {"closed": "closed", "budget": f"budget of {s.budget:g} s spent",
               "interrupted": "interrupted"}.get(s.status, s.status)
    ran = sum(1 for b in s.bounds if b.status != "unavailable")
    lines.append(f"  {verdict}: {ran} method(s) in {s.seconds:.3g} s")
    return "\n".join(lines)


def _ord(norm: str) -> float:
    return {"2": 2.0, "inf": math.inf, "1": 1.0}[norm]
