"""`lipopt make-problems`: regenerate the shipped problems and manifest.toml bit for bit
(`harness.problems.make_problems`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..harness.problems import DEFAULT_ROOT, MANIFEST, make_problems


def cli_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=str(DEFAULT_ROOT),
                        help="directory to write the problems and manifest.toml into")
    parser.add_argument("--only", default=None,
                        help="comma-separated problem names or families (default: all)")


def cli_run(args: argparse.Namespace) -> int:
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    written = make_problems(args.out, only=only, echo=print)
    print(f"{Path(args.out) / MANIFEST}: {len(written)} problems")
    return 0
