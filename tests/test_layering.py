"""Data flows one way: offline readers (checkers, capacity analysis, the report) import no Locust or gevent.

Verdicts must be recomputable anywhere a run directory lands (e.g. a GPU box without Locust), and importing Locust
monkey-patches the process; so these modules must not pull it in.
"""

from __future__ import annotations

import subprocess
import sys

OFFLINE = ["rmt.check.api", "rmt.check.spec", "rmt.check.inputs", "rmt.check.capacity_steps",
           "rmt.check.capacity_analysis", "rmt.capacity.compare", "rmt.report", "rmt.core.windows", "rmt.core.samples",
           "rmt.server", "rmt.fleet.judge"]


def test_offline_modules_import_without_locust_or_gevent() -> None:
    code = ("import importlib, sys\n"
            f"for name in {OFFLINE!r}:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
