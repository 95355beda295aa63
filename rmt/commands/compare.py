"""``rmt compare RUN_A RUN_B``: two capacity runs side by side — sustainable rate, saturation, knee, p99 at the
knee, what binds first, peak memory — with a warning when their hardware or server versions differ (compare the
manifests' ``machine_info``). Exit 0; 2 on bad input."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rmt.capacity.compare import compare_runs, format_rows


def register(sub: Any) -> None:
    """Add ``rmt compare``."""
    p = sub.add_parser("compare", help="compare the capacity, latency and memory of two sweep runs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="run directory (before)")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="run directory (after)")
    p.add_argument("--slo-p99-ms", type=float, default=0.0, metavar="MS", help="judge sustainable rates under this p99")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: Any) -> int:
    """Print the table and the warnings."""
    rows, warnings = compare_runs(args.run_a, args.run_b, args.slo_p99_ms)
    print(format_rows(["SCOPE", "FIGURE", "A", "B", "CHANGE"], rows))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
