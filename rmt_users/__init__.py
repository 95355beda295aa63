"""Locust user classes that drive multi-model, multi-priority Triton traffic, and their exact accounting.

- :mod:`rmt_users.scenario`: the declarative traffic model (streams, patterns, phases).
- :mod:`rmt_users.payloads`: checks streams against model configs; pre-encoded request bodies.
- :mod:`rmt_users.transport`: lean HTTP and gRPC clients for the hot path.
- :mod:`rmt_users.schedule`: phases, open-loop arrivals, weighted stream choice.
- :mod:`rmt_users.engine`: per-process traffic state; :mod:`rmt_users.users`: the Locust users.
- :mod:`rmt_users.windows`: per-second windows and traces (the run-directory records); :mod:`rmt_users.plugin`:
  plans, drains and records a run across master and workers.
"""


from __future__ import annotations

import importlib
from typing import Any

# Public names, imported on first use: the record modules (windows, failures) must stay importable without Locust
# and gevent's monkey-patching, so that offline readers (checkers, capacity analysis) never pull them in.
_EXPORTS = {
    "TritonTraffic": "rmt_users.plugin", "add_arguments": "rmt_users.plugin",
    "Scenario": "rmt_users.scenario", "load_scenario": "rmt_users.scenario", "parse_scenario": "rmt_users.scenario",
    "TritonGrpcUser": "rmt_users.users", "TritonHttpUser": "rmt_users.users", "TritonUser": "rmt_users.users",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rmt_users' has no attribute {name!r}")
