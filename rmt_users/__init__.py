"""Locust user classes that drive multi-model, multi-priority Triton traffic, and their exact accounting.

- :mod:`rmt_users.scenario`: the declarative traffic model (streams, patterns, phases).
- :mod:`rmt_users.payloads`: checks streams against model configs; pre-encoded request bodies.
- :mod:`rmt_users.transport`: lean HTTP and gRPC clients for the hot path.
- :mod:`rmt_users.schedule`: phases, open-loop arrivals, weighted stream choice.
- :mod:`rmt_users.engine`: per-process traffic state; :mod:`rmt_users.users`: the Locust users.
- :mod:`rmt_users.windows`: per-second windows and traces (the run-directory records); :mod:`rmt_users.plugin`:
  plans, drains and records a run across master and workers.
"""

from rmt_users.plugin import TritonTraffic, add_arguments
from rmt_users.scenario import Scenario, load_scenario, parse_scenario
from rmt_users.users import TritonGrpcUser, TritonHttpUser, TritonUser

__all__ = ["Scenario", "TritonGrpcUser", "TritonHttpUser", "TritonTraffic", "TritonUser", "add_arguments",
           "load_scenario", "parse_scenario"]
