"""Locust user classes that drive multi-model, multi-priority Triton traffic, and their exact accounting.

The declarative traffic model these users run (streams, patterns, phases) is :mod:`rmt.core.scenario`, and the records
they write are :mod:`rmt.core.windows` and :mod:`rmt.core.records`.

- :mod:`rmt.load.payloads`: checks streams against model configs; pre-encoded request bodies.
- :mod:`rmt.load.transport`: lean HTTP and gRPC clients for the hot path.
- :mod:`rmt.load.schedule`: phases, open-loop arrivals, weighted stream choice.
- :mod:`rmt.load.engine`: per-process traffic state; :mod:`rmt.load.users`: the Locust users.
- :mod:`rmt.load.windows`: per-second windows and traces as one process counts them; :mod:`rmt.load.plugin`:
  plans, drains and records a run across master and workers.
"""


from __future__ import annotations

import importlib
from typing import Any

# Public names, imported on first use: importing rmt.load must not pull in Locust and gevent's monkey-patching for a
# caller that needs only the scenario parser.
_EXPORTS = {
    "TritonTraffic": "rmt.load.plugin", "add_arguments": "rmt.load.plugin",
    "Scenario": "rmt.core.scenario", "load_scenario": "rmt.core.scenario", "parse_scenario": "rmt.core.scenario",
    "TritonGrpcUser": "rmt.load.users", "TritonHttpUser": "rmt.load.users", "TritonUser": "rmt.load.users",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rmt.load' has no attribute {name!r}")
