"""rate_limit: a ready rmt scenario (traffic, checks and expectations in ``rate_limit.json`` beside this file).

rl_high and rl_low contend for rate-limiter resource R1 (budget 2, each instance needs 2): the budget must hold at
every instant, and neither model starves.

Run it with plain Locust (``locust -f rmt/scenarios/rate_limit.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run rate_limit``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
