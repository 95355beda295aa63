"""stateful: a ready rmt scenario (traffic, checks and expectations in ``stateful.json`` beside this file).

Triton's stateful request paths: sequences (state kept past the idle reclaim vs its twin), system shared-memory I/O
with three region lifecycles, the response cache at a set hit ratio, a BLS model keeping its responses and an
ensemble whose second step leaks.

Run it with plain Locust (``locust -f rmt/scenarios/stateful.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run stateful``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
