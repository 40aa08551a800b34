"""``medreg report DIR``: rebuild summary.json, report.md and report.html of an evaluation folder.

Same as ``medreg evaluate report DIR`` (reads ``DIR/rows/``, else ``DIR/metrics.csv``).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report", help="rebuild the report of an evaluation folder (medreg evaluate) from its metrics",
        description="Rewrite DIR/summary.json, DIR/report.md and DIR/report.html from DIR's rows (or metrics.csv).",
    )
    parser.add_argument("dir", metavar="DIR", help="an evaluation folder (holds evaluation.json)")
    parser.add_argument("--max-qc-pairs", type=int, default=20, metavar="N", help="QC strips of the first N pairs")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medreg.evaluate import rebuild_report

    print(rebuild_report(Path(args.dir), max_qc_pairs=args.max_qc_pairs).text())
    return 0
