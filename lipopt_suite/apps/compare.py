"""`lipopt compare`: run methods x problems with the harness and write a report
(`harness.runner.compare`). A run writes runs/PRESET (resumed on a rerun) and is set
beside the committed reference results/PRESET; `--as-reference` regenerates the reference
itself; `--preset all` runs every preset in turn."""

from __future__ import annotations

import argparse
import sys

from ..errors import InputError
from ..harness.problems import DEFAULT_ROOT, PRESETS
from ..harness.runner import ALL, REFERENCE_DIR, compare


def cli_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("problems", nargs="*", metavar="PROBLEM",
                        help="manifest names, families or network files (default: the "
                             "preset's problems)")
    parser.add_argument("--preset", default="default",
                        help=", ".join(PRESETS) + ", or all (every preset in turn, each "
                             "into runs/PRESET)")
    parser.add_argument("--methods", default=None, help="comma-separated method names")
    parser.add_argument("--norm", default=None, help="comma-separated norms (2, inf, 1)")
    parser.add_argument("--out", default=None, help="results directory (default runs/PRESET)")
    parser.add_argument("--as-reference", action="store_true",
                        help="write into results/PRESET, the committed reference results")
    parser.add_argument("--root", default=str(DEFAULT_ROOT),
                        help="directory holding manifest.toml (default problems/)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--executor", default="local", choices=("local", "dask"))
    parser.add_argument("--scheduler", default=None,
                        help="Dask scheduler address (default: a LocalCluster)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds per job (default: the preset's)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier records")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run again the jobs recorded as error or timeout")
    parser.add_argument("--import", dest="imports", action="append", default=[],
                        metavar="MODULE", help="module to import in every worker (extra "
                                               "methods); repeatable")
    parser.add_argument("--no-report", action="store_true", help="records only")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def cli_run(args: argparse.Namespace) -> int:
    def split(text: str | None) -> list[str] | None:
        return None if text is None else [t.strip() for t in text.split(",") if t.strip()]

    if args.preset == ALL:
        if args.problems or args.methods or args.out:
            raise InputError("--preset all runs every preset on its own problems into "
                             "runs/PRESET (results/PRESET with --as-reference): drop "
                             "PROBLEM, --methods and --out")
        presets = list(PRESETS)
    else:
        presets = [args.preset]
    if args.as_reference and args.out:
        raise InputError("--as-reference writes results/PRESET: drop --out")
    for preset in presets:
        out = REFERENCE_DIR / preset if args.as_reference else args.out
        summary = compare(args.problems, preset=preset, methods=split(args.methods),
                          norms=split(args.norm), out=out, root=args.root,
                          jobs=args.jobs, executor=args.executor, scheduler=args.scheduler,
                          time_limit=args.time_limit, fresh=args.fresh,
                          retry_failed=args.retry_failed, imports=args.imports,
                          progress=not args.quiet, report=not args.no_report,
                          echo=lambda m: print(m, file=sys.stderr))
        failed = sum(1 for r in summary.records if r.get("status") in ("error", "timeout"))
        print(f"{summary.out}: {len(summary.records)} records ({summary.ran} run now, "
              f"{failed} error/timeout) in {summary.seconds:.1f} s")
    return 0
