"""weights_plenty: a ready rmt scenario (traffic, checks and expectations in ``weights_plenty.json``).

Triton QA's plentiful rate-limiter case: a weighted pair (1 vs 2) with resources for both instances at once, so the
weights never arbitrate and ``weights`` expects the pair to complete alike.

Run it with plain Locust (``locust -f rmt/scenarios/weights_plenty.py --host 127.0.0.1:8000``, add
``--headless`` or ``--master``/``--worker``) or end to end with ``rmt run weights_plenty``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
