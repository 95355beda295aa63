"""warmup: a ready rmt scenario (traffic, checks and expectations in ``warmup.json`` beside this file).

Explicit model control: cold_start and cold_start_warmed are loaded while their readiness is polled, then probed at
once; cold_start pays 800 ms on its first request, its twin warmed up before READY.

Run it with plain Locust (``locust -f rmt/scenarios/warmup.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run warmup``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
