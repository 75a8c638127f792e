"""`lipopt bench`: run every benchmark module under lipopt_suite/bench and write one JSON.

Each module in lipopt_suite.bench defines `run(quick: bool) -> dict` (figures, with the
baseline measured in the same run) and a one-line `TITLE`. Results go to results/bench.json
(merged with earlier figures of benchmarks not run this time, so `--only` keeps the rest).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import time
from pathlib import Path
from typing import Any

from ..bound import to_jsonable
from ..errors import InputError


def available() -> list[str]:
    from .. import bench

    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__)
                  if not m.name.startswith("_"))


def machine() -> dict[str, Any]:
    import os

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "platform": platform.platform()}


def run(names: list[str] | None = None, *, quick: bool = False,
        out: str | Path = "results/bench.json", echo: Any = None) -> dict[str, Any]:
    """Run the named benchmarks (all by default) and merge their figures into `out`."""
    names = names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        raise InputError(f"unknown benchmark {', '.join(unknown)}; available: "
                         f"{', '.join(available())}")
    path = Path(out)
    merged: dict[str, Any] = {}
    if path.exists():
        try:
            merged = json.loads(path.read_text())
        except json.JSONDecodeError:
            merged = {}
    merged.setdefault("benchmarks", {})
    for name in names:
        mod = importlib.import_module(f"lipopt_suite.bench.{name}")
        if echo:
            echo(f"bench {name}: {getattr(mod, 'TITLE', '')}")
        start = time.perf_counter()
        figures = mod.run(quick=quick)
        figures["wall_seconds"] = time.perf_counter() - start
        figures["quick"] = quick
        figures["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
        merged["benchmarks"][name] = to_jsonable(figures)
        merged["machine"] = machine()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        if echo:
            echo(json.dumps(merged["benchmarks"][name], indent=2, sort_keys=True))
    return merged


def cli_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--out", default="results/bench.json", help="JSON file to write")
    parser.add_argument("--only", default=None,
                        help="comma-separated benchmark names (default: all)")


def cli_run(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.only.split(",")] if args.only else None
    run(names, quick=args.quick, out=args.out, echo=print)
    return 0
