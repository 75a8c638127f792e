"""The tightest certified interval [lower, upper] on a network's Lipschitz constant within a
time budget: `sandwich(net, budget=60)`.

The methods come from the registry: every one that can run on the network, norm and domain
(`registry.check_applicable`), ordered by the cost class each declares in `@method(cost=...)`
(`registry.COSTS`: cheap closed forms and single passes, then one convex program, then
bounded searches, then branch-and-bound with what is left, then enumerations), and within a
class uppers before lowers. Each method gets a time limit cut from the remaining budget:
as its own `time_limit` option when it takes one, and by running it in a helper process
killed at the limit when it takes none or is an exact search (as `lipopt bound
--time-limit` does with `limits.call_with_limit`; the helper is started at once, so that its
interpreter and imports are ready when needed); cheap methods run as they are. The run
stops when the interval closes (upper <= lower (1 + CLOSE_RTOL), or an exact value) or the
budget is spent. Only certified bounds become ends of the interval; estimates are listed
but never used. Ctrl-C returns the interval reached so far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import registry
from ..bound import Bound, Domain, check_norm, to_jsonable
from ..errors import InputError, UnsupportedError
from ..network import Network
from ..registry import COSTS, MethodInfo, check_applicable, estimate, get

# An interval this narrow (relative) is closed: the constant is known to float64 precision.
CLOSE_RTOL = 1e-9
# Share of the remaining budget each method of a cost class may use; "anytime" and
# "exhaustive" methods take what is left (split among the exhaustive ones still to try).
SHARE = {"solver": 0.2, "search": 0.1}
# Seconds a fresh helper process needs to start (an interpreter importing torch and the
# registry: 1 to 2 s measured on two idle cores, 5 s and more on busy ones): a method that
# would need a fresh helper with less time than this is not started.
CHILD_START = 2.0
# Cost classes whose methods run in the helper process even though they take a time limit:
# they get SOFT_SHARE of their slice as their own limit, to stop and return what they have
# proven, and are killed at the end of the slice (bab's time checks fall between batches,
# and on a 784-input net one step overran a 7 s limit by minutes).
HARD_LIMIT_COSTS = ("anytime", "exhaustive")
SOFT_SHARE = 0.9
# Share of the remaining budget of the first, short run of an anytime method, before the
# searches.
PROBE_SHARE = 0.15
# Classes in which a generalist is skipped once a specialist of the same kind has given a
# certified bound (LipSDP for GroupSort nets solves a larger program for a ReLU net's bound).
SKIP_GENERALISTS = ("solver",)
# Below this many seconds left, nothing more is started (a method needs a moment to return).
MIN_SLICE = 0.05
# Enumerations refuse large nets by default because, unlimited, they could run for hours;
# under the sandwich's time limit a larger one costs no more than its share. Applied to
# methods that take these options (by name), only when they run with a time limit.
SIZE_LIMITS_UNDER_TIME = {"max_input_dim": 12}
STATUSES = ("closed", "budget", "interrupted", "running")  # "running": a progress snapshot
KIND_ORDER = {"upper": 0, "exact": 1, "lower": 2, "estimate": 3}


def candidates(names: Sequence[str] | None = None) -> list[MethodInfo]:
    """The methods the sandwich considers, in the order it tries them: every registered
    method that gives a certified bound, plus the cheap estimates (listed, never used as
    ends), by cost class then upper/exact/lower then name. `names` restricts the choice
    (unknown names: InputError listing the valid ones)."""
    pool = [get(n) for n in names] if names is not None else [
        m for m in registry.methods() if m.kind != "estimate" or m.cost == "cheap"]
    order = {c: i for i, c in enumerate(COSTS)}
    return sorted({m.name: m for m in pool}.values(),
                  key=lambda m: (order.get(m.cost, len(COSTS)), KIND_ORDER[m.kind], m.name))


def applicable(net: Network, norm: str = "2", domain: Domain | None = None,
               names: Sequence[str] | None = None, X: Any = None) -> list[MethodInfo]:
    """`candidates` that the registry lets run on this network, norm and domain; within a
    cost class and kind, specialists (no capability this network does not use) first."""
    out = []
    for info in candidates(names):
        try:
            check_applicable(info, net, norm, _domain_for(info, domain), _inputs(info, X))
        except InputError:  # UnsupportedError is one
            continue
        out.append(info)
    rank = {m.name: i for i, m in enumerate(out)}
    order = {c: i for i, c in enumerate(COSTS)}
    return sorted(out, key=lambda m: (order.get(m.cost, len(COSTS)), KIND_ORDER[m.kind],
                                      generalist(m, net), rank[m.name]))


def generalist(info: MethodInfo, net: Network) -> bool:
    """Whether `info` handles a kind of network (graphs, GroupSort layers) that `net` is not:
    its formulation is then a larger one for the same relaxation."""
    return (info.graphs and not net.is_graph) or (info.groupsort and not net.has_groupsort)


@dataclass(frozen=True)
class Sandwich:
    """A certified interval on the Lipschitz constant and how it was reached.

    `lower` and `upper` are the Bounds at its ends (a trivial Bound 0 or inf when no method
    gave one), `exact` the value when an exact method finished (else None), `bounds` every
    Bound tried in order (refusals with status "unavailable"), `status` "closed" (the
    interval closed), "budget" (time ran out first) or "interrupted" (Ctrl-C).
    """

    lower: Bound
    upper: Bound
    exact: float | None
    bounds: tuple[Bound, ...]
    norm: str
    domain: Domain | None
    seconds: float
    budget: float
    status: str
    lower_methods: tuple[str, ...] = ()
    upper_methods: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def interval(self) -> tuple[float, float]:
        return self.lower.value, self.upper.value

    @property
    def ratio(self) -> float:
        """upper / lower (inf when the lower end is 0)."""
        lo, up = self.interval
        return up / lo if lo > 0 else math.inf

    @property
    def closed(self) -> bool:
        return self.status == "closed"

    @property
    def witness(self) -> dict[str, Any] | None:
        """The points behind the lower end: a pair (x, y) with ||f(x) - f(y)|| / ||x - y||
        at least the lower bound, or a point of the best region of an enumeration."""
        w = self.lower.details.get("witness")
        return w if isinstance(w, dict) else None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({
            "lower": self.lower.value, "upper": self.upper.value, "exact": self.exact,
            "ratio": self.ratio, "status": self.status, "norm": self.norm,
            "quantity": ("global" if self.domain is None
                         else "anchored" if self.domain.anchored else "local"),
            "domain": None if self.domain is None else self.domain.to_dict(),
            "lower_methods": list(self.lower_methods),
            "upper_methods": list(self.upper_methods), "witness": self.witness,
            "seconds": self.seconds, "budget": self.budget,
            "bounds": [b.to_dict() for b in self.bounds], **self.details})


def sandwich(net: Network, *, budget: float = 60.0, norm: Any = "2",
             domain: Domain | None = None, methods: Sequence[str] | None = None,
             X: Any = None, progress: Callable[[Bound, Sandwich], Any] | None = None
             ) -> Sandwich:
    """The tightest certified interval on the Lipschitz constant of `net` (in `norm`,
    globally or over `domain`) that the registered methods reach within `budget` seconds.

    Methods run in the order of `candidates` (cheap bounds first, branch-and-bound with the
    rest of the budget last) until the interval closes or the budget is spent; `methods`
    restricts them to those names, `X` (data points, one per row) feeds the methods that
    use data. `progress(bound, interval_so_far)` is called after each method. Ctrl-C ends
    the run with the interval reached (status "interrupted").
    Guarantee: `lower` and `upper` are certified bounds (or the trivial 0 and inf);
    estimates never become ends.
    """
    norm = check_norm(norm)
    if not (isinstance(budget, int | float) and not isinstance(budget, bool)
            and math.isfinite(budget) and budget > 0):
        raise InputError(f"budget must be a positive number of seconds, got {budget!r}")
    if domain is not None and not isinstance(domain, Domain):
        raise InputError(f"domain must be a lipopt_suite.Domain, got {type(domain).__name__}")
    if not isinstance(net, Network):
        raise InputError(f"sandwich needs a lipopt_suite.Network (lipopt_suite.load or "
                         f"from_torch), got {type(net).__name__}")
    net.validate()
    if X is not None:
        X = net.points(X, "X")
    if domain is not None and domain.center.size != net.input_dim:
        raise InputError(f"domain centre has {domain.center.size} entries but the network "
                         f"input has {net.input_dim}")
    if isinstance(methods, str) or not (methods is None or all(isinstance(m, str)
                                                                for m in methods)):
        raise InputError(f"methods must be a list of method names, got {methods!r}")
    chosen = applicable(net, norm, domain, methods, X)
    if not chosen:
        raise UnsupportedError("no registered method applies to this network, norm and "
                               "domain" + (f" among {', '.join(methods)}" if methods else ""))
    run = _Run(net, norm, domain, float(budget), X)
    status = "budget"
    try:
        for role in dict.fromkeys(_role(m) for m in chosen if _needs_helper(m)):
            run.helpers[role] = _Helper()
        plan = _plan(chosen)
        for i, (info, probe) in enumerate(plan):
            if not run.wants(info) or run.covered(info):
                continue
            bound = run.call(info, [m for m, _ in plan[i + 1:]], probe)
            if bound is None:
                continue
            if bound.details.get("stopped") == "interrupt":  # a method that caught Ctrl-C
                raise KeyboardInterrupt
            if progress is not None:
                progress(bound, run.result("running"))
            if run.is_closed():
                status = "closed"
                break
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        for helper in run.helpers.values():
            helper.close()
    if status == "budget" and run.is_closed():
        status = "closed"
    return run.result(status)


# ------------------------------------------------------------------------------- running
def _domain_for(info: MethodInfo, domain: Domain | None) -> Domain | None:
    """A global-only method bounds the local constant too (local <= global); it runs
    without the domain."""
    return None if info.domain == "never" else domain


def _inputs(info: MethodInfo, X: Any) -> dict[str, Any]:
    return {"X": X} if X is not None and ("X" in info.needs or _takes(info, "X")) else {}


def _takes(info: MethodInfo, option: str) -> bool:
    import inspect

    return option in inspect.signature(info.fn).parameters


def _plan(chosen: Sequence[MethodInfo]) -> list[tuple[MethodInfo, bool]]:
    """(method, probe) in the order they run: `chosen`, with a short probe of each anytime
    method inserted before the searches (small nets close there, and the searches never
    run; the anytime method runs again with the rest of the budget after them)."""
    anytime = [m for m in chosen if m.cost == "anytime"]
    plan: list[tuple[MethodInfo, bool]] = []
    for m in chosen:
        if anytime and COSTS.index(m.cost) >= COSTS.index("search"):
            plan.extend((a, True) for a in anytime)
            anytime = []
        plan.append((m, False))
    return plan


def _needs_helper(info: MethodInfo) -> bool:
    """Methods that run in the helper process, killed at their slice: those with no time
    limit of their own, and the exact searches, one step of which (a bounding batch, the
    final exact-arithmetic check) can outlast their own limit on a large network."""
    return info.cost != "cheap" and (not _takes(info, "time_limit")
                                     or info.cost in HARD_LIMIT_COSTS)


def _role(info: MethodInfo) -> str:
    """Which helper runs `info`: exact searches have their own, so that a search killed at
    its limit leaves branch-and-bound a warm helper."""
    return "exact" if info.cost in HARD_LIMIT_COSTS else "search"


def _serve(conn: Any, parent: int) -> None:
    """The helper process: import the registry, then run the methods it is sent."""
    import os
    import threading
    import traceback

    def watch() -> None:  # end with the parent, even one killed without cleaning up
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    try:
        registry.load_all()
        conn.send(("ready", None))
        while True:
            msg = conn.recv()
            if msg is None:
                return
            net, name, norm, domain, options = msg
            try:
                conn.send(("ok", estimate(net, name, norm=norm, domain=domain, **options)))
            except Exception as exc:  # noqa: BLE001 - the parent turns it into a Bound
                conn.send(("error", traceback.format_exception_only(type(exc), exc)[-1]
                           .strip()))
    except (EOFError, OSError, KeyboardInterrupt):
        return


class _Helper:
    """A spawned process that runs methods with no time limit of their own, killed (and
    replaced on the next call) when one overruns its limit."""

    def __init__(self) -> None:
        import multiprocessing as mp
        import os

        ctx = mp.get_context("spawn")  # fork after torch's threads have started can hang
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, os.getpid()), daemon=True,
                                name="lipopt-sandwich-helper")
        self.proc.start()
        child.close()
        self.ready = False

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def wait_ready(self, within: float) -> bool:
        """Whether the helper is ready (waiting up to `within` s for it to start)."""
        if not self.ready:
            try:
                if not self.conn.poll(max(0.0, within)):
                    return False
                self.ready = self.conn.recv()[0] == "ready"
            except (EOFError, OSError):
                self.close()
        return self.ready

    def run(self, payload: tuple, limit: float) -> tuple[str, Any]:
        """("ok", Bound), ("error", message) or ("timeout", message) within `limit` s, on a
        ready helper."""
        try:
            deadline = time.monotonic() + limit
            self.conn.send(payload)
            if not self.conn.poll(max(0.0, deadline - time.monotonic())):
                self.close()
                return "timeout", f"no result within {limit:.3g} s"
            return self.conn.recv()
        except (EOFError, OSError):
            self.close()
            return "error", f"the helper process died (exit code {self.proc.exitcode})"

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


class _Run:
    """The state of one sandwich: the clock and every Bound so far."""

    def __init__(self, net: Network, norm: str, domain: Domain | None, budget: float,
                 X: Any) -> None:
        self.net, self.norm, self.domain, self.budget, self.X = net, norm, domain, budget, X
        self.start = time.perf_counter()
        self.bounds: list[Bound] = []
        self.helpers: dict[str, _Helper] = {}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def ends(self) -> tuple[list[Bound], list[Bound]]:
        """(certified lower ends, certified upper ends) among the Bounds so far."""
        lows, ups = [], []
        for b in self.bounds:
            if not (b.certified and math.isfinite(b.value)) or b.status == "error":
                continue
            if b.kind in ("lower", "exact"):
                lows.append(b)
            if b.kind in ("upper", "exact"):
                ups.append(b)
            low = _stopped_lower(b)
            if low is not None:
                lows.append(low)
        return lows, ups

    def is_closed(self) -> bool:
        lows, ups = self.ends()
        if any(b.kind == "exact" and b.status == "ok" for b in ups):
            return True
        if not lows or not ups:
            return False
        lo, up = max(b.value for b in lows), min(b.value for b in ups)
        return lo > 0 and up <= lo * (1 + CLOSE_RTOL)

    def wants(self, info: MethodInfo) -> bool:
        """Whether to start `info` now: while budget is left; past it, cheap methods still
        run until each end has a certified bound."""
        if self.left() > MIN_SLICE:
            return True
        if info.cost != "cheap":
            return False
        lows, ups = self.ends()
        return (info.kind in ("upper", "exact") and not ups) or (
            info.kind in ("lower", "exact") and not lows)

    def covered(self, info: MethodInfo) -> bool:
        """Whether a specialist of the same class and kind already bounded this network
        (then a generalist of a class in SKIP_GENERALISTS is skipped)."""
        if info.cost not in SKIP_GENERALISTS or not generalist(info, self.net):
            return False
        return any(b.certified and b.status == "ok" and b.kind == info.kind
                   and get(b.method).cost == info.cost and not generalist(get(b.method), self.net)
                   for b in self.bounds)

    def limit(self, info: MethodInfo, later: Sequence[MethodInfo], probe: bool = False
              ) -> float | None:
        """The seconds `info` may use (None: no limit, for cheap methods)."""
        if info.cost == "cheap":
            return None
        left = max(self.left(), MIN_SLICE)
        if probe:
            return max(PROBE_SHARE * left, MIN_SLICE)
        if info.cost in SHARE:
            return max(SHARE[info.cost] * left, MIN_SLICE)
        if info.cost == "exhaustive":
            return left / (1 + sum(1 for m in later if m.cost == "exhaustive"))
        return left

    def call(self, info: MethodInfo, later: Sequence[MethodInfo], probe: bool = False
             ) -> Bound | None:
        """Run `info` under its limit and keep its Bound (None when it does not run)."""
        domain = _domain_for(info, self.domain)
        options = _inputs(info, self.X)
        limit = self.limit(info, later, probe)
        t0 = time.perf_counter()
        try:
            if limit is not None and _takes(info, "time_limit"):
                options["time_limit"] = limit
                for key, value in SIZE_LIMITS_UNDER_TIME.items():
                    if _takes(info, key):
                        options[key] = value
            if limit is not None and _needs_helper(info):
                bound = self._child(info, domain, options, limit)
                if bound is None:
                    return None
            elif limit is not None:
                bound = estimate(self.net, info.name, norm=self.norm, domain=domain, **options)
            else:
                bound = estimate(self.net, info.name, norm=self.norm, domain=domain, **options)
        except InputError as exc:  # the method refuses this network (size, structure)
            bound = Bound(info.name, info.kind, math.nan, self.norm, status="unavailable",
                          domain=domain, seconds=time.perf_counter() - t0,
                          details={"message": str(exc)})
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - a failing method is a record, not the end
            bound = Bound(info.name, info.kind, math.nan, self.norm, status="error",
                          domain=domain, seconds=time.perf_counter() - t0,
                          details={"message": f"{type(exc).__name__}: {exc}"})
        self.bounds.append(bound)
        return bound

    def _child(self, info: MethodInfo, domain: Domain | None, options: dict[str, Any],
               limit: float) -> Bound | None:
        """`info` in its helper process, killed after `limit` seconds of the helper being
        ready; its own time limit, if it takes one, is SOFT_SHARE of that (None: not started,
        a fresh helper would need longer than `limit` to start)."""
        role = _role(info)
        helper = self.helpers.get(role)
        if helper is None or not helper.alive:
            if limit < CHILD_START:
                return None
            helper = self.helpers[role] = _Helper()
        t0 = time.perf_counter()
        # the helper's start is a cost shared by every method it runs: not charged to one
        if not helper.wait_ready(self.left()):
            status, value = "timeout", "the helper process did not start within the budget"
        else:
            slice_ = min(limit, max(self.left(), MIN_SLICE))
            if "time_limit" in options:
                options["time_limit"] = SOFT_SHARE * slice_
            status, value = helper.run((self.bare(), info.name, self.norm, domain, options),
                                       slice_)
        if not helper.alive and self.left() > CHILD_START:
            self.helpers[role] = _Helper()  # warms up while the next methods run
        if status == "ok":
            return value
        name = value.split(":", 1)[0].rsplit(".", 1)[-1]
        if status == "error" and name in ("InputError", "UnsupportedError"):
            raise InputError(value.split(":", 1)[-1].strip())
        return Bound(info.name, info.kind, math.nan, self.norm, status=status,
                     domain=domain, seconds=time.perf_counter() - t0,
                     details={"message": value})

    def bare(self) -> Network:
        """The network without its memoised values, to send to a child process."""
        import copy

        net = copy.copy(self.net)
        object.__setattr__(net, "_memo", {})
        return net

    def result(self, status: str) -> Sandwich:
        lows, ups = self.ends()
        exacts = [b for b in ups if b.kind == "exact" and b.status == "ok"]
        lower = max(lows, key=lambda b: b.value) if lows else _trivial("lower", self)
        upper = min(ups, key=lambda b: b.value) if ups else _trivial("upper", self)
        if exacts:  # an exact value is both ends
            best = max(exacts, key=lambda b: b.value)
            lower = best if best.value >= lower.value else lower
            upper = best if best.value <= upper.value else upper
        exact = max(b.value for b in exacts) if exacts else None
        return Sandwich(lower, upper, exact, tuple(self.bounds), self.norm, self.domain,
                        time.perf_counter() - self.start, self.budget, status,
                        _producers(lows, lower.value), _producers(ups, upper.value))


def _stopped_lower(b: Bound) -> Bound | None:
    """The certified lower bound an anytime exact method keeps when it stops early (its
    Bound is then an upper bound, with `details["lower"]` and the witness pair)."""
    if b.kind != "upper" or not b.certified:
        return None
    value, w = b.details.get("lower"), b.details.get("witness")
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0 and isinstance(w, dict) and "y" in w):
        return None
    return Bound(b.method, "lower", float(value), b.norm, certified=True, seconds=b.seconds,
                 status=b.status, domain=b.domain,
                 details={"witness": w, "from": f"the certified lower bound {b.method} "
                                                "keeps when stopped"})


def _trivial(kind: str, run: _Run) -> Bound:
    value = 0.0 if kind == "lower" else math.inf
    return Bound("none", kind, value, run.norm, certified=True, domain=run.domain,
                 details={"message": f"no certified {kind} bound within the budget"})


def _producers(bounds: Sequence[Bound], value: float) -> tuple[str, ...]:
    """The methods whose certified bound equals the end `value` (to CLOSE_RTOL)."""
    tol = CLOSE_RTOL * abs(value) if math.isfinite(value) else 0.0
    return tuple(dict.fromkeys(b.method for b in bounds if abs(b.value - value) <= tol))


def short_vector(x: Any, k: int = 4) -> str:
    """`[a, b, c, d, ...] (n entries)`: the first entries of a witness point."""
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    head = ", ".join(f"{t:.4g}" for t in v[:k])
    return f"[{head}{', ...' if v.size > k else ''}]" + (f" ({v.size} entries)"
                                                         if v.size > k else "")
