"""Locust user classes that drive multi-model, multi-priority Triton traffic, and their exact accounting.

- :mod:`rmt.load.scenario`: the declarative traffic model (streams, patterns, phases).
- :mod:`rmt.load.payloads`: checks streams against model configs; pre-encoded request bodies.
- :mod:`rmt.load.transport`: lean HTTP and gRPC clients for the hot path.
- :mod:`rmt.load.schedule`: phases, open-loop arrivals, weighted stream choice.
- :mod:`rmt.load.engine`: per-process traffic state; :mod:`rmt.load.users`: the Locust users.
- :mod:`rmt.load.windows`: per-second windows and traces (the run-directory records); :mod:`rmt.load.plugin`:
  plans, drains and records a run across master and workers.
"""


from __future__ import annotations

import importlib
from typing import Any

# Public names, imported on first use: the record modules (windows, failures) must stay importable without Locust
# and gevent's monkey-patching, so that offline readers (checkers, capacity analysis) never pull them in.
_EXPORTS = {
    "TritonTraffic": "rmt.load.plugin", "add_arguments": "rmt.load.plugin",
    "Scenario": "rmt.load.scenario", "load_scenario": "rmt.load.scenario", "parse_scenario": "rmt.load.scenario",
    "TritonGrpcUser": "rmt.load.users", "TritonHttpUser": "rmt.load.users", "TritonUser": "rmt.load.users",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rmt.load' has no attribute {name!r}")
