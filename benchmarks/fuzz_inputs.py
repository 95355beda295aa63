"""Bad-input fuzzing at volume: every property of ``tests/fuzz_cases.py`` over N hypothesis examples (default 1000),
counting examples and distinct failures (exception type + the innermost rmt frame), for docs/reliability.md.

    .venv/bin/python benchmarks/fuzz_inputs.py                 # 1000 examples per property
    .venv/bin/python benchmarks/fuzz_inputs.py -n 3000 --only 'check specs'

A failure does not stop the run: it is recorded with its first example and the count of examples that hit it; the
exit code is 1 when any property failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, settings

from tests.fuzz_cases import PROPERTIES


def signature(exc: BaseException) -> str:
    """``Type at rmt/module.py:line`` of the innermost frame inside rmt (or the last frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/rmt/" in f.filename] or frames
    where = f"{inside[-1].filename.split('/rmt/')[-1]}:{inside[-1].lineno}" if inside else "?"
    first = str(exc).splitlines()[0][:100] if str(exc) else ""
    return f"{type(exc).__name__} at rmt/{where}" + (f" ({first})" if isinstance(exc, AssertionError) else "")


def fuzz(name: str, examples: int, seed: int) -> dict[str, Any]:
    """Run one property over ``examples`` examples; its counts and failures."""
    strategy, check = PROPERTIES[name]
    seen: dict[str, list[Any]] = {}
    count = 0

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(example: Any) -> None:
        nonlocal count
        count += 1
        try:
            check(example)
        except Exception as exc:  # recorded, not raised: hypothesis goes on generating
            entry = seen.setdefault(signature(exc), [0, repr(example)[:300]])
            entry[0] += 1

    started = time.monotonic()
    run._hypothesis_internal_use_seed = seed  # type: ignore[attr-defined]
    run()
    return {"name": name, "examples": count, "failures": seen, "seconds": time.monotonic() - started}


def main() -> int:
    """Fuzz every property (or ``--only`` one) and print the counts."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--examples", type=int, default=1000)
    ap.add_argument("--only", action="append", default=[], choices=sorted(PROPERTIES))
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    bad = 0
    for name in args.only or list(PROPERTIES):
        result = fuzz(name, args.examples, args.seed)
        fails = result["failures"]
        bad += bool(fails)
        print(f"{name}: {result['examples']} examples in {result['seconds']:.0f} s, "
              f"{sum(v[0] for v in fails.values())} failing in {len(fails)} distinct way(s)", flush=True)
        for sig, (n, example) in sorted(fails.items(), key=lambda kv: -kv[1][0]):
            print(f"  {n:5d} × {sig}\n          e.g. {example}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
