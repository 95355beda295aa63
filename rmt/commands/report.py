"""``rmt report RUN_DIR [--out FILE]``: (re)build ``report.html`` of a run directory, offline.

The page holds the verdicts of ``rmt check`` (``verdicts.json``) with their explanations, memory against completed
requests with the fitted trend and threshold, growth per phase, throughput and share vs demand, latency CDFs by
priority, concurrency vs budget and the warmup timeline; a section without data says so. Prints the path written.
Exit 0, or 2 with one ``rmt: error:`` line when RUN_DIR holds no run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rmt.report import write_report


def register(sub: Any) -> None:
    """Add ``rmt report``."""
    p = sub.add_parser("report", help="build report.html of a run directory (self-contained, opens offline)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the folder a run wrote")
    p.add_argument("--out", type=Path, metavar="FILE", help="where to write the page (default RUN_DIR/report.html)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: Any) -> int:
    """Write the report and print its path."""
    print(write_report(args.run_dir, args.out))
    return 0
