"""`lipopt report`: re-render the tables and plots of a results directory from its records
(`harness.report.write_report`)."""

from __future__ import annotations

import argparse

from ..harness.report import write_report


def cli_configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", help="results directory holding records.jsonl")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--reference", default=None,
                        help="another results directory (e.g. results/default) to set this "
                             "one beside in reference.md")


def cli_run(args: argparse.Namespace) -> int:
    for path in write_report(args.results, plots=not args.no_plots, reference=args.reference):
        print(path)
    return 0
