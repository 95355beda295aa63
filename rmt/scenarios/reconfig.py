"""reconfig: a ready rmt scenario (traffic, checks and expectations in ``reconfig.json`` beside this file).

rl_low is reloaded under load with a changed rate-limiter weight (priority 2 -> 1, Triton's config override in
explicit mode): the R1 budget holds throughout and no stream stalls across the reload.

Run it with plain Locust (``locust -f rmt/scenarios/reconfig.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run reconfig``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
