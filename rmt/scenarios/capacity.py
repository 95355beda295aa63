"""capacity: a stepped open-loop sweep over the scenario's mix (definition in ``capacity.json`` beside this file).

Each step (``step-03@120rps``) is held until stable (perf_analyzer's rule: the last 3 windows within ±10 % in
throughput and latency, at most ``max_step_s``); the sweep stops at saturation or SLO breach. Run it with
``rmt capacity`` (figures, knee, binding resource, headroom) or ``rmt run capacity``; plain Locust works too
(``locust -f rmt/scenarios/capacity.py --host 127.0.0.1:8000 --headless -u 64``).
"""

from locust import events

from rmt.capacity.controller import SweepShape, attach_sweep
from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach_sweep(events, attach(events, __file__))


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""


class Sweep(SweepShape):
    """The stepped load: fixed users, steps ended by the controller."""
