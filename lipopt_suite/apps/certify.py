"""`lipopt certify`: certified l2 robustness radii, local vs global.

A certified l2 radius (Avant & Morgansen, Proposition 6): no perturbation with
sqrt(2) L(x0, eps) eps < margin changes the top class, where L(x0, eps) is the constant
anchored at x0 over the ball of radius eps (`core.local`). `certified_radius` finds the
largest such eps by bisection; `certify` sets the global-bound radius (AutoLip), attack
upper bounds (PGD, FGSM) and a lower bound on the anchored constant beside it; `sweep`
gives the data of the bound-vs-radius plot.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..bound import Domain, to_jsonable
from ..core import attack as attacks
from ..core.local import Anchor, anchored_bound, prepare
from ..errors import InputError, UnsupportedError
from ..io import load_center, load_problem
from ..network import Network
from ..numerics.rounding import SQRT2_UP, UNIT_ROUNDOFF, down, up
from ..registry import estimate


def _certifies(L: float, eps: float, margin: float) -> bool:
    """Proposition 6: sqrt(2) L eps < margin (rounded so that the exact inequality holds)."""
    return up(up(SQRT2_UP * L) * eps) < margin


@dataclass(frozen=True)
class Certificate:
    """Certified l2 radii around x0 for one label: with the local and with the global bound."""

    label: int
    predicted: int
    margin: float
    local_radius: float
    local_bound: float  # L(x0, local_radius)
    global_radius: float
    global_bound: float
    certified: bool
    evaluations: int
    seconds: float
    attacks: dict[str, Any] = field(default_factory=dict)
    lower: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({
            "label": self.label, "predicted": self.predicted, "margin": self.margin,
            "local": {"radius": self.local_radius, "bound": self.local_bound,
                      "evaluations": self.evaluations, "seconds": self.seconds},
            "global": {"radius": self.global_radius, "bound": self.global_bound,
                       "method": "autolip"},
            "certified": self.certified, "attacks": self.attacks, "lower": self.lower})


def certified_radius(net: Network, center: Any, label: int, *, device: Any = None,
                     rel_tol: float = 1e-3, max_evaluations: int = 80,
                     anchor: Anchor | None = None, **bound_options: Any) -> Certificate:
    """The largest eps (to `rel_tol`) with sqrt(2) L(x0, eps) eps < margin, found by
    bisection (the bound grows with eps), and the radius margin / (sqrt(2) L_global) of the
    AutoLip bound. Any radius reported satisfies the inequality with the bound computed at
    that very radius, so it is certified whatever the bound's monotonicity."""
    start = time.perf_counter()
    if net.output_dim < 2:
        raise InputError("certified radii need a classifier with at least 2 outputs")
    if not (math.isfinite(rel_tol) and 0 < rel_tol < 1):
        raise InputError(f"relative tolerance must lie in (0, 1), got {rel_tol}")
    anchor = anchor or prepare(net, center, device=device, cap=True)
    if anchor.global_bound is None:
        raise InputError("certified radii need the global bound: prepare the anchor with caps")
    if not isinstance(label, (int, np.integer)) or isinstance(label, bool):
        raise InputError(f"label must be an integer, got {label!r}")
    label = int(label)
    margin = anchor.margin(label)
    predicted = int(np.argmax(anchor.logits))
    Lg = anchor.global_bound
    certified = True
    if margin <= 0:
        return Certificate(label, predicted, margin, 0.0, math.nan, 0.0, Lg, True, 0,
                           time.perf_counter() - start)
    r_global = down(down(margin / up(SQRT2_UP * Lg)) * (1 - 4 * UNIT_ROUNDOFF))
    evaluations = 0
    cache: dict[float, float] = {}

    def bound_at(eps: float) -> float:
        nonlocal evaluations, certified
        if eps not in cache:
            res = anchored_bound(anchor, eps, **bound_options)
            evaluations += 1
            certified &= res.certified
            cache[eps] = res.value
        return cache[eps]

    lo = 0.0
    if r_global > 0 and _certifies(bound_at(r_global), r_global, margin):
        lo = r_global
    # an upper bracket: the bound is at least ||J(x0)||-like near x0, so start there
    hi = max(2 * lo, r_global, 1e-12)
    while _certifies(bound_at(hi), hi, margin) and evaluations < max_evaluations:
        lo, hi = hi, 2 * hi
    while hi - lo > rel_tol * hi and evaluations < max_evaluations:
        mid = 0.5 * (lo + hi)
        if _certifies(bound_at(mid), mid, margin):
            lo = mid
        else:
            hi = mid
    L_lo = bound_at(lo) if lo > 0 else math.nan
    return Certificate(label, predicted, margin, lo, L_lo, r_global, Lg, certified,
                       evaluations, time.perf_counter() - start)


def certify(net: Network, center: Any, label: int, *, device: Any = None,
            rel_tol: float = 1e-3, attack: bool = True, restarts: int = 32, steps: int = 100,
            lower: bool = True, seed: int = 0) -> Certificate:
    """`certified_radius` plus what the report shows beside it: PGD and FGSM upper bounds on
    the minimal adversarial perturbation, and a lower bound on the anchored constant at the
    certified radius (secants from the centre found by gradient ascent)."""
    cert = certified_radius(net, center, label, device=device, rel_tol=rel_tol)
    extra: dict[str, Any] = {}
    if attack and cert.margin > 0:
        start = max(cert.local_radius, 1e-6) * 2
        pgd = attacks.pgd_min_perturbation(net, center, label, restarts=restarts, steps=steps,
                                           seed=seed, device=device, start=start)
        fgsm = attacks.fgsm_l2(net, center, label, device=device)
        extra = {"pgd": pgd.to_dict(), "fgsm": fgsm.to_dict()}
    low: dict[str, Any] = {}
    if lower and cert.local_radius > 0:
        dom = Domain.ball(center, cert.local_radius, anchored=True)
        b = estimate(net, "gradient-ascent", domain=dom, seed=seed, device=device, restarts=8,
                     steps=100)
        low = {"method": "gradient-ascent", "value": b.value, "radius": cert.local_radius}
    return replace(cert, attacks=extra, lower=low)


def sweep(net: Network, center: Any, radii: Any, *, label: int | None = None,
          lower: tuple[str, ...] = ("random", "gradient-ascent"), device: Any = None,
          **bound_options: Any) -> list[dict[str, Any]]:
    """Local bound, global bound and lower bounds on the anchored constant as the radius
    grows (data for the bound-vs-radius plot; nothing is written). With a label, each row
    also says whether the radius is certified by Proposition 6."""
    anchor = prepare(net, center, device=device, cap=True)
    margin = anchor.margin(label) if label is not None else None
    rows = []
    for eps in [float(e) for e in np.asarray(radii, dtype=np.float64).reshape(-1)]:
        t0 = time.perf_counter()
        res = anchored_bound(anchor, eps, **bound_options)
        row: dict[str, Any] = {"radius": eps, "local": res.value,
                               "local_seconds": time.perf_counter() - t0,
                               "autolip": anchor.global_bound, "certified": res.certified}
        dom = Domain.ball(anchor.center, eps, anchored=True)
        for name in lower:
            row[name] = estimate(net, name, domain=dom).value
        if margin is not None:
            row["radius_certified"] = bool(margin > 0 and _certifies(res.value, eps, margin))
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------- CLI
def cli_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("net", help="network file (.npz, .pt/.pth state dict, .nnet, .onnx)")
    parser.add_argument("--center", default=None,
                        help="input to certify (.npy, or .npz with 'center'; default: the "
                        "'center' stored in the network's .npz)")
    parser.add_argument("--label", type=int, required=True, help="class to certify")
    parser.add_argument("--tol", type=float, default=1e-3,
                        help="relative tolerance of the radius bisection (default 1e-3)")
    parser.add_argument("--restarts", type=int, default=32, help="PGD restarts (default 32)")
    parser.add_argument("--steps", type=int, default=100, help="PGD steps (default 100)")
    parser.add_argument("--no-attack", action="store_true", help="skip the attacks")
    parser.add_argument("--no-lower", action="store_true",
                        help="skip the lower bound on the anchored constant")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random restarts")
    parser.add_argument("--device", default=None, help="cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def cli_run(args: argparse.Namespace) -> int:
    net, extras = load_problem(args.net)
    if not net.is_relu:
        names = sorted({a.name for a in net.activations if a.name != "relu"}
                       | ({"groupsort"} if net.has_groupsort else set()))
        raise UnsupportedError(f"certify needs a ReLU network, this one has "
                               f"{', '.join(names)} activations")
    if args.center is not None:
        center = load_center(args.center, net.input_dim)
    elif "center" in extras:
        center = np.asarray(extras["center"], dtype=np.float64).reshape(-1)
        if center.size != net.input_dim:
            raise InputError(f"{args.net}: stored centre has {center.size} entries, the "
                             f"network input has {net.input_dim}")
    else:
        raise InputError(f"{args.net} stores no 'center': give --center FILE")
    if args.restarts < 1 or args.steps < 1:
        raise InputError("--restarts and --steps must be at least 1")
    if args.device is not None and args.device not in ("cpu", "cuda") \
            and not args.device.startswith("cuda:"):
        raise InputError(f"--device must be cpu or cuda, got {args.device!r}")
    if not 0 <= args.label < net.output_dim:
        raise InputError(f"--label {args.label} is out of range: the network has "
                         f"{net.output_dim} outputs")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    cert = certify(net, center, args.label, device=args.device, rel_tol=args.tol,
                   attack=not args.no_attack, restarts=args.restarts, steps=args.steps,
                   lower=not args.no_lower, seed=args.seed)
    if args.json:
        print(json.dumps({"net": args.net, **cert.to_dict()}))
        return 0
    print(format_certificate(cert, args.net))
    return 0


def format_certificate(cert: Certificate, name: str = "") -> str:
    """The human-readable `lipopt certify` report."""
    head = f"{name}: " if name else ""
    lines = [f"{head}label {cert.label} (predicted {cert.predicted}), margin {cert.margin:.6g}"]
    if cert.margin <= 0:
        lines.append("  the centre is not classified as this label: nothing to certify "
                     "(radius 0)")
        return "\n".join(lines)
    cert_word = "certified" if cert.certified else "NOT certified"
    lines.append(f"  local radius   {cert.local_radius:.6g}   (anchored bound L = "
                 f"{cert.local_bound:.6g} at that radius, {cert_word}, "
                 f"{cert.evaluations} evaluations, {cert.seconds:.3g} s)")
    lines.append(f"  global radius  {cert.global_radius:.6g}   (AutoLip bound L = "
                 f"{cert.global_bound:.6g}, certified)")
    if cert.global_radius > 0:
        lines.append(f"  local / global radius: {cert.local_radius / cert.global_radius:.3g}x")
    if cert.lower:
        lines.append(f"  anchored constant at that radius >= {cert.lower['value']:.6g} "
                     f"({cert.lower['method']} secant)")
    for key, title in (("pgd", "PGD"), ("fgsm", "FGSM")):
        res = cert.attacks.get(key)
        if res is None:
            continue
        if res["radius"] is None or not math.isfinite(float(res["radius"] or math.inf)):
            lines.append(f"  {title}: no adversarial example found")
        else:
            lines.append(f"  {title}: adversarial example at distance {res['radius']:.6g} "
                         f"(class {res['adversarial_label']})")
    best = [float(r["radius"]) for r in cert.attacks.values()
            if r.get("radius") is not None and math.isfinite(float(r["radius"]))]
    if best:
        lines.append(f"  the minimal adversarial perturbation lies in "
                     f"[{cert.local_radius:.6g}, {min(best):.6g}]")
    return "\n".join(lines)
