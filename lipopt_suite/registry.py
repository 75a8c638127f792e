"""The method registry: every method is a plain function registered once with `@method`.

`estimate(net, "autolip", norm="2")` looks a method up, checks that it supports the norm,
the network's layers and activations and the domain, runs it and stamps the wall time.
Methods are discovered by importing every module under `core/` and `solvers/`, so adding a
method is one decorated function in its own module.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bound import Bound, Domain, check_norm
from .errors import InputError, UnsupportedError
from .network import Network

METHOD_PACKAGES = ("lipopt_suite.core", "lipopt_suite.solvers")
NEEDS_DOMAIN = ("never", "optional", "required")
# What a run costs, cheapest first (the order in which `sandwich` tries methods):
# "cheap" closed forms and single passes (milliseconds to seconds at any size), "solver" one
# convex program, "search" a bounded search or a size-limited enumeration (seconds, stopped
# early by a time limit), "anytime" an exact search that keeps a certified interval when
# stopped, "exhaustive" an exact enumeration or integer program that must finish to pay.
COSTS = ("cheap", "solver", "search", "anytime", "exhaustive")


@dataclass(frozen=True)
class MethodInfo:
    """What the registry knows of a method, beyond its function."""

    name: str
    fn: Callable[..., Bound]
    kind: str
    norms: tuple[str, ...]
    summary: str
    relu_only: bool = False  # needs ReLU (piecewise linear with slope set {0, 1})
    mlp_only: bool = False  # needs Linear/activation layers only
    domain: str = "optional"  # one of NEEDS_DOMAIN
    needs: tuple[str, ...] = ()  # extra inputs, e.g. ("X",) for the data lower bound
    domain_kinds: tuple[str, ...] = ("ball", "box")
    anchored: str = "never"  # "never", "optional", "only": whether it bounds anchored constants
    activations: tuple[str, ...] = ()  # activations it handles; empty: any
    graphs: bool = False  # accepts computation-graph networks (else sequential ones only)
    groupsort: bool = False  # handles GroupSort layers (else refuses networks holding one)
    # takes GroupSort layers as their sorting networks of ReLU comparators (exact unrolling)
    sorts_as_relu: bool = False
    cost: str = "search"  # one of COSTS

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "norms": list(self.norms),
                "summary": self.summary, "relu_only": self.relu_only,
                "mlp_only": self.mlp_only, "domain": self.domain, "needs": list(self.needs),
                "domain_kinds": list(self.domain_kinds), "anchored": self.anchored,
                "activations": list(self.activations), "graphs": self.graphs,
                "groupsort": self.groupsort, "sorts_as_relu": self.sorts_as_relu,
                "cost": self.cost}


METHODS: dict[str, MethodInfo] = {}
_loaded = False


def method(name: str, *, kind: str, norms: tuple[str, ...], summary: str, **flags: Any
           ) -> Callable[[Callable[..., Bound]], Callable[..., Bound]]:
    """Register `fn` under `name`. Flags are MethodInfo fields (relu_only, mlp_only, ...)."""
    if kind not in ("upper", "lower", "exact", "estimate"):
        raise ValueError(f"method {name}: unknown kind {kind!r}")
    if flags.get("domain", "optional") not in NEEDS_DOMAIN:
        raise ValueError(f"method {name}: domain must be one of {NEEDS_DOMAIN}")
    if flags.get("cost", "search") not in COSTS:
        raise ValueError(f"method {name}: cost must be one of {COSTS}")

    def register(fn: Callable[..., Bound]) -> Callable[..., Bound]:
        if name in METHODS and METHODS[name].fn is not fn:
            raise ValueError(f"method {name!r} registered twice")
        METHODS[name] = MethodInfo(name, fn, kind, tuple(norms), summary, **flags)
        return fn

    return register


def load_all() -> dict[str, MethodInfo]:
    """Import every method module once (solver libraries stay unimported until used)."""
    global _loaded
    if not _loaded:
        for pkg_name in METHOD_PACKAGES:
            pkg = importlib.import_module(pkg_name)
            for mod in pkgutil.iter_modules(pkg.__path__):
                if not mod.name.startswith("_"):
                    importlib.import_module(f"{pkg_name}.{mod.name}")
        _loaded = True
    return METHODS


def methods() -> list[MethodInfo]:
    """Every registered method, sorted by kind then name."""
    order = {"upper": 0, "exact": 1, "lower": 2, "estimate": 3}
    return sorted(load_all().values(), key=lambda m: (order[m.kind], m.name))


def get(name: str) -> MethodInfo:
    table = load_all()
    if name not in table:
        raise InputError(f"unknown method {name!r}; valid methods: {', '.join(sorted(table))}")
    return table[name]


# options of every MLP-only method: the size limits of unrolling (unroll.MAX_UNITS and
# unroll.MAX_ENTRIES by default)
UNROLL_OPTIONS = ("unroll_units", "unroll_entries")


def mlp_form(info: MethodInfo, net: Network, options: dict[str, Any] | None = None
             ) -> tuple[Network, dict[str, Any] | None]:
    """The network an MLP-only method runs on, and what unrolling did (None: the network
    itself). A sequential network that is not an MLP (convolutions, pooling, flatten), or
    a ReLU computation graph (residual sums, concatenations), is unrolled into an MLP
    computing exactly the same function (`unroll.unroll`, memoised on the network), its
    GroupSort layers written as ReLU comparators for a method with `sorts_as_relu`;
    UnsupportedError when that is impossible or too large."""
    if not info.mlp_only:
        return net, None
    try:
        net.mlp(groupsort=info.groupsort)
        return net, None
    except InputError as exc:
        first = str(exc)
    from .unroll import MAX_ENTRIES, MAX_UNITS, unroll

    opts = options or {}
    limits = {"unroll_units": MAX_UNITS, "unroll_entries": MAX_ENTRIES}
    for key in UNROLL_OPTIONS:
        value = opts.get(key, limits[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{info.name}: option {key} must be a positive integer, got "
                             f"{value!r}")
        limits[key] = value
    try:
        u = unroll(net, max_units=limits["unroll_units"], max_entries=limits["unroll_entries"],
                   sorts="relu" if info.sorts_as_relu and not info.groupsort else "keep")
    except UnsupportedError as exc:
        raise UnsupportedError(f"method {info.name} needs an MLP: {first}; {exc}") from None
    return u.net, u.info


def flat_domain(domain: Domain | None) -> Domain | None:
    """The domain on flattened inputs (for an unrolled network)."""
    if domain is None:
        return None
    radius = domain.radius if domain.radius.size == 1 else domain.radius.ravel()
    return Domain(domain.kind, domain.center.ravel(), radius, domain.anchored)


def check_applicable(info: MethodInfo, net: Network, norm: str, domain: Domain | None,
                     options: dict[str, Any] | None = None) -> None:
    """Raise UnsupportedError/InputError when `info` cannot run on this input (an MLP-only
    method checks the unrolled MLP of a network that is not one)."""
    if norm not in info.norms:
        raise UnsupportedError(f"method {info.name} does not support norm {norm} "
                               f"(supported: {', '.join(info.norms)})")
    if net.is_graph and not info.graphs:
        able = sorted(m.name for m in METHODS.values() if m.graphs)
        why = ""
        if info.mlp_only:
            try:
                mlp_form(info, net, options)
                able = []
            except UnsupportedError as exc:
                why = f" ({exc})"
        if able:
            raise UnsupportedError(f"method {info.name} needs a sequential network (layers "
                                   "in order) or a graph it can unroll, this one is a "
                                   f"computation graph{why}; methods for graphs: "
                                   f"{', '.join(able)}")
    if net.has_groupsort and not (info.groupsort or info.sorts_as_relu):
        able = sorted(m.name for m in METHODS.values() if m.groupsort or m.sorts_as_relu)
        raise UnsupportedError(f"method {info.name} does not handle GroupSort layers (not "
                               "elementwise activations); methods for GroupSort networks: "
                               f"{', '.join(able)}")
    target, _ = mlp_form(info, net, options)
    allowed = ("relu",) if info.relu_only else info.activations
    if allowed:
        names = sorted({a.name for a in target.activations if a.name not in allowed})
        if names:
            raise UnsupportedError(f"method {info.name} needs {' or '.join(allowed)} "
                                   f"activations, this network has {', '.join(names)}")
    if domain is None and info.domain == "required":
        raise InputError(f"method {info.name} needs a domain: give --center FILE and --radius R")
    if domain is not None:
        if info.domain == "never":
            raise InputError(f"method {info.name} computes global bounds only; drop "
                             "--center/--radius")
        if domain.kind not in info.domain_kinds:
            raise UnsupportedError(f"method {info.name} does not support a {domain.kind} domain "
                                   f"(supported: {', '.join(info.domain_kinds)})")
        if domain.center.size != net.input_dim:
            raise InputError(f"domain centre has {domain.center.size} entries but the network "
                             f"input has {net.input_dim} ({'x'.join(map(str, net.input_shape))})")
        if domain.anchored and info.anchored == "never":
            raise UnsupportedError(f"method {info.name} does not bound the anchored constant")
        if not domain.anchored and info.anchored == "only":
            raise UnsupportedError(f"method {info.name} bounds the constant anchored at the "
                                   "centre only (use an anchored domain)")
    for need in info.needs:
        if (options or {}).get(need) is None:
            raise InputError(f"method {info.name} needs {need} (e.g. data points stored as "
                             f"'{need}' in the network's .npz file)")


# parameters of every method that are not options
NOT_OPTIONS = ("net", "norm", "domain")


def option_names(info: MethodInfo) -> list[str]:
    """The options a method takes: its keyword parameters besides net, norm and domain."""
    import inspect

    return [k for k, p in inspect.signature(info.fn).parameters.items()
            if k not in NOT_OPTIONS and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def check_option_names(info: MethodInfo, options: dict[str, Any]) -> None:
    """InputError naming the first option the method does not take, and the valid ones."""
    valid = option_names(info) + (list(UNROLL_OPTIONS) if info.mlp_only else [])
    for key in options:
        if key not in valid:
            raise InputError(f"method {info.name} has no option {key!r} "
                             f"(options: {', '.join(valid) or 'none'})")


# numeric options that may be zero (all others must be positive)
NON_NEGATIVE_OPTIONS = ("seed", "explicit_max", "dense_gram_max")


def check_option_values(info: MethodInfo, options: dict[str, Any], net: Network) -> None:
    """Type and range of each option, from the method's annotations: integers and floats
    finite and positive (seeds and a few limits may be 0), flags boolean, names strings, and
    data points `X` finite inputs of the network (`Network.points`)."""
    import inspect

    params = inspect.signature(info.fn).parameters
    for key, value in options.items():
        if key in UNROLL_OPTIONS:
            continue  # checked by mlp_form
        p = params.get(key)
        if p is None or value is None:
            continue
        ann = str(p.annotation).replace(" ", "")
        where = f"{info.name}: option {key}"
        if key == "X":
            net.points(value, where)
            continue
        base = ann.split("|")[0]
        if base == "bool":
            if not isinstance(value, bool):
                raise InputError(f"{where} must be true or false, got {value!r}")
        elif base in ("int", "float"):
            ok_type = isinstance(value, int) if base == "int" else isinstance(value, int | float)
            if isinstance(value, bool) or not ok_type:
                raise InputError(f"{where} must be {'an integer' if base == 'int' else 'a number'}"
                                 f", got {value!r}")
            low_ok = value >= 0 if key in NON_NEGATIVE_OPTIONS else value > 0
            if not (math.isfinite(value) and low_ok):
                raise InputError(f"{where} must be finite and "
                                 f"{'>= 0' if key in NON_NEGATIVE_OPTIONS else '> 0'}, "
                                 f"got {value!r}")
        elif base == "str" and not isinstance(value, str):
            raise InputError(f"{where} must be a name, got {value!r}")


def estimate(net: Network, method_name: str, *, norm: Any = "2", domain: Domain | None = None,
             **options: Any) -> Bound:
    """Run one method on one network and return its Bound (wall time in `seconds`).

    An MLP-only method given a sequential network that is not an MLP runs on its exact
    unrolling (`mlp_form`; `details["unrolled"]` gives its sizes): the same function, so
    its values and witnesses (points of the flattened input) carry over."""
    info = get(method_name)
    norm = check_norm(norm)
    net.validate()
    check_option_names(info, options)
    check_applicable(info, net, norm, domain, options)
    check_option_values(info, options, net)
    start = time.perf_counter()
    target, unrolled = mlp_form(info, net, options)
    options = {k: v for k, v in options.items() if k not in UNROLL_OPTIONS}
    if unrolled is not None and options.get("X") is not None:
        options["X"] = net.points(options["X"])
    bound = info.fn(target, norm=norm, domain=flat_domain(domain) if unrolled else domain,
                    **options)
    if unrolled is not None:
        bound = bound.replace(domain=domain, details={**bound.details, "unrolled": unrolled})
    elapsed = time.perf_counter() - start
    if bound.seconds == 0.0:
        bound = bound.replace(seconds=elapsed)
    if bound.certified and math.isnan(bound.value):
        # a NaN is no bound (overflow somewhere): never pass it on as certified
        details = {**bound.details, "message": "the value is NaN (overflow?): not a bound"}
        bound = bound.replace(certified=False, status="inaccurate", details=details)
    return bound
