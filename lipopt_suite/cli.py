"""The `lipopt` command.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 anything else
(one line; set LIPOPT_DEBUG=1 for the traceback). Subcommands other than `methods` and
`bound` live with the code they drive: each owner module defines
`cli_configure(parser)` and `cli_run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import math
import os
import sys
from typing import Any

from .errors import InputError
from .quiet import VERBOSE_ENV

# subcommand -> (owner module, one-line help)
DELEGATED = {
    "sandwich": ("lipopt_suite.apps.sandwich", "the tightest certified interval on a network's "
                 "constant within a time budget"),
    "compare": ("lipopt_suite.apps.compare", "run methods x problems and write a report"),
    "report": ("lipopt_suite.apps.report", "re-render tables and plots from records"),
    "lipcst": ("lipopt_suite.apps.lipcst", "Max-Cut -> LIP-CST reduction on a graph"),
    "certify": ("lipopt_suite.apps.certify", "certified l2 robustness radius, local vs global"),
    "bench": ("lipopt_suite.apps.bench", "performance benchmarks -> results/bench.json"),
    "make-problems": ("lipopt_suite.apps.problems", "regenerate the shipped problems"),
    "train": ("lipopt_suite.apps.train", "train a classifier under a Lipschitz regulariser"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line with exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        where = self.prog.removeprefix("lipopt").strip()
        raise InputError(f"{where}: {message}" if where else message)


def _parser(command: str | None) -> argparse.ArgumentParser:
    p = _Parser(prog="lipopt", description="Lipschitz constants of neural networks: upper "
                "bounds, lower bounds and exact values, side by side.")
    p.add_argument("--verbose", action="store_true",
                   help="let the native solvers (HiGHS, SCS, CVXOPT, ...) print their logs "
                   "(anywhere on the command line)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub.required = True
    m = sub.add_parser("methods", help="list the registered methods")
    m.add_argument("--json", action="store_true", help="machine-readable output")
    b = sub.add_parser("bound", help="run one method on one network")
    b.add_argument("net", help="network file (.npz, .pt/.pth state dict, .nnet, .onnx)")
    b.add_argument("--method", required=True, help="method name (see `lipopt methods`)")
    b.add_argument("--norm", default="2", help="2, inf or 1 (default 2)")
    b.add_argument("--center", help="centre of the domain (.npy, or .npz with 'center')")
    b.add_argument("--radius", type=float, help="radius of the domain (l2 ball or box)")
    b.add_argument("--domain", choices=("ball", "box"), default=None,
                   help="domain shape (default: ball)")
    b.add_argument("--anchored", action="store_true",
                   help="bound the constant anchored at the centre (Avant & Morgansen)")
    b.add_argument("--time-limit", type=float, default=None, help="seconds")
    b.add_argument("--solver", default=None, help="force a solver (SDP/MIP methods)")
    b.add_argument("--device", default=None, help="cpu or cuda")
    b.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option (repeatable), value parsed as JSON when it can be")
    b.add_argument("--json", action="store_true", help="print the Bound as one JSON object")
    for name, (module, text) in DELEGATED.items():
        sp = sub.add_parser(name, help=text)
        if name == command:
            importlib.import_module(module).cli_configure(sp)
        else:
            sp.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--verbose" in argv:  # anywhere on the line, before or after the subcommand
        argv = [a for a in argv if a != "--verbose"]
        os.environ[VERBOSE_ENV] = "1"  # inherited by worker processes too
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = _parser(command).parse_args(argv)
        if args.command == "methods":
            return _methods(args)
        if args.command == "bound":
            return _bound(args)
        module = importlib.import_module(DELEGATED[args.command][0])
        return int(module.cli_run(args) or 0)
    except InputError as exc:
        print(f"lipopt: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lipopt: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("LIPOPT_DEBUG"):
            raise
        print(f"lipopt: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(LIPOPT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# ------------------------------------------------------------------------ methods
def _methods(args: argparse.Namespace) -> int:
    from .registry import methods

    infos = methods()
    if args.json:
        print(json.dumps([m.to_dict() for m in infos], indent=2))
        return 0
    width = max(len(m.name) for m in infos)
    for m in infos:
        flags = []
        if m.relu_only:
            flags.append("relu")
        elif m.activations:
            flags.append("/".join(m.activations))
        if m.mlp_only:
            flags.append("mlp")
        if m.graphs:
            flags.append("graphs")
        if m.groupsort:
            flags.append("groupsort")
        elif m.sorts_as_relu:
            flags.append("groupsort as relu")
        if m.domain == "required":
            flags.append("needs domain")
        if m.needs:
            flags.append("needs " + ",".join(m.needs))
        extra = f" [{'; '.join(flags)}]" if flags else ""
        print(f"{m.name:<{width}}  {m.kind:<8}  p={','.join(m.norms):<8} {m.summary}{extra}")
    return 0


# ------------------------------------------------------------------------ bound
def parse_options(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; values parsed as JSON when possible (numbers, true/false, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"option {item!r} is not KEY=VALUE")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


def build_domain(center: str | None, radius: float | None, kind: str | None, anchored: bool,
                 input_dim: int) -> Any:
    from .bound import Domain

    if center is None and radius is None:
        if kind is not None or anchored:
            raise InputError("--domain/--anchored need --center FILE and --radius R")
        return None
    if center is None or radius is None:
        raise InputError("a domain needs both --center FILE and --radius R")
    if not (math.isfinite(radius) and radius > 0):
        raise InputError(f"--radius must be positive and finite, got {radius}")
    from .io import load_center

    c = load_center(center, input_dim)
    if (kind or "ball") == "box":
        if anchored:
            raise InputError("--anchored needs a ball domain")
        return Domain.box(c, radius)
    return Domain.ball(c, radius, anchored=anchored)


def _accepts(fn: Any, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def _bound(args: argparse.Namespace) -> int:
    from .bound import check_norm
    from .io import load_problem
    from .registry import check_applicable, check_option_names, get

    info = get(args.method)
    norm = check_norm(args.norm)
    net, extras = load_problem(args.net)
    domain = build_domain(args.center, args.radius, args.domain,
                          args.anchored or info.anchored == "only", net.input_dim)
    options = parse_options(args.option)
    check_option_names(info, options)
    if args.solver is not None:
        if not _accepts(info.fn, "solver"):
            raise InputError(f"method {info.name} uses no solver; drop --solver")
        options["solver"] = args.solver
    if args.device is not None:
        options["device"] = _device(args.device, info)
    elif "device" in options:
        options["device"] = _device(str(options["device"]), info)
    if "X" in extras and _accepts(info.fn, "X"):
        options.setdefault("X", extras["X"])
    check_applicable(info, net, norm, domain, options)
    limit = args.time_limit
    if limit is not None and not (math.isfinite(limit) and limit > 0):
        raise InputError(f"--time-limit must be positive, got {limit}")
    if limit is not None and _accepts(info.fn, "time_limit"):
        options["time_limit"] = limit
        limit = None
    bound = run_bound(args.net, info.name, norm, domain, options, limit)
    if args.json:
        print(json.dumps(bound.to_dict()))
    else:
        print(format_bound(bound))
    return 0 if bound.status in ("ok", "timeout", "inaccurate", "unavailable") else 1


def _device(name: str, info: Any) -> str:
    import torch

    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"--device must be cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here")
    if not _accepts(info.fn, "device"):
        if name == "cpu":
            return name
        raise InputError(f"method {info.name} runs on the CPU only; drop --device")
    return name


def _job(path: str, method_name: str, norm: str, domain: Any, options: dict[str, Any]) -> Any:
    from .io import load
    from .registry import estimate

    return estimate(load(path), method_name, norm=norm, domain=domain, **options)


def run_bound(path: str, method_name: str, norm: str, domain: Any, options: dict[str, Any],
              limit: float | None) -> Any:
    """Run a method, in a child process killed after `limit` seconds when one is given."""
    from .bound import Bound
    from .limits import call_with_limit
    from .registry import get

    if limit is None:
        return _job(path, method_name, norm, domain, options)
    out = call_with_limit(_job, path, method_name, norm, domain, options, time_limit=limit)
    if out.status == "ok":
        return out.value
    if out.status == "error" and out.message.startswith(("InputError", "UnsupportedError")):
        raise InputError(out.message.split(":", 1)[-1].strip())
    kind = get(method_name).kind
    return Bound(method_name, kind, float("nan"), norm, status=out.status, domain=domain,
                 seconds=limit if out.status == "timeout" else 0.0,
                 details={"message": out.message})


def format_bound(bound: Any) -> str:
    cert = "certified" if bound.certified else "not certified"
    where = bound.quantity
    if bound.domain is not None:
        where += f" ({bound.domain.kind}, radius {float(bound.domain.radius.max()):g})"
    status = "" if bound.status == "ok" else f"  status={bound.status}"
    kind = bound.kind
    if bound.details.get("reason"):  # a method that returns less than its kind says why
        kind += f" ({bound.details['reason']})"
    return (f"{bound.method}  {kind}  {bound.value:.6g}  ({cert}, l{bound.norm}, "
            f"{where}, {bound.seconds:.3g} s){status}")


if __name__ == "__main__":
    sys.exit(main())

