"""``rmt check RUN_DIR [--checks SPEC]``: recompute every verdict of a run offline, no server needed.

Prints one table row per check and subject (measured value, threshold, one sentence), writes ``verdicts.json`` and
``junit.xml`` (one testcase per check and subject) into the run directory or ``--out``, and exits 0 when every
check passed, 3 when one failed, 4 when the run is incomplete (it lost data: a worker died, it was interrupted; the
``completeness`` rows say what, and every other verdict is marked), 2 on a usage error, 1 on a tool error.

SPEC: ``CHECK.PARAM = VALUE`` items separated by ``,`` or ``;`` — e.g.
``--checks 'leak.max_growth="1MiB/10k", fairness.min_jain=0.9, priority=off'``. ``rmt check --list`` shows every
check, parameter and default. Precedence: ``--checks`` > the run's scenario ``checks`` > ``--checks-file`` > defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rmt.check.api import evaluate as evaluate_run
from rmt.check.report import format_table
from rmt.check.spec import describe_checks, merge_specs, parse_spec, spec_from_mapping
from rmt.core.errors import ConfigError
from rmt.core.jsonfile import read_json


def register(sub: Any) -> None:
    """Add ``rmt check``."""
    p = sub.add_parser("check", help="verdicts on a run directory (leak, rate limits, fairness, priority, warmup)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="the folder a run wrote")
    p.add_argument("--checks", action="append", default=[], metavar="SPEC",
                   help='thresholds, e.g. leak.max_growth="1MiB/10k",fairness.min_jain=0.9; repeatable')
    p.add_argument("--checks-file", type=Path, metavar="FILE",
                   help='JSON mapping of checks, e.g. {"leak": {"max_growth": "1MiB/10k"}}')
    p.add_argument("--out", type=Path, metavar="DIR", help="where verdicts.json and junit.xml go (default RUN_DIR)")
    p.add_argument("--list", action="store_true", help="list every check with its parameters and defaults")
    p.set_defaults(func=cmd_check)


def _file_spec(path: Path) -> dict[str, Any]:
    data = read_json(path, "--checks-file")
    if isinstance(data, dict) and isinstance(data.get("checks"), dict):
        data = data["checks"]
    return spec_from_mapping(data, origin=str(path))


def cmd_check(args: Any) -> int:
    """Build the checks, read the run, evaluate all, print and write the outputs, exit 0 or 3."""
    if args.list:
        print(describe_checks())
        return 0
    if args.run_dir is None:
        raise ConfigError("give the run directory: rmt check RUN_DIR (or rmt check --list)")
    file_spec = _file_spec(args.checks_file) if args.checks_file else {}
    cli_spec = merge_specs(*(parse_spec(text) for text in args.checks))
    result = evaluate_run(args.run_dir, cli_spec, file_spec=file_spec)
    verdicts = result.verdicts
    print(format_table(verdicts))
    for note in result.notes:
        print(f"note: {note}")
    jpath, xpath = result.write(args.out)
    print(f"wrote {jpath} and {xpath}")
    result.raise_for_outcome(jpath)
    return 0
