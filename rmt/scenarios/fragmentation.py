"""fragmentation: a ready rmt scenario (traffic, checks and expectations in ``fragmentation.json`` beside this file).

Diverse request shapes (log-uniform 1..65536 elements) on pool_grow, whose buffer pool gets every buffer back but
never reuses one, beside pool_grow_healthy.

Run it with plain Locust (``locust -f rmt/scenarios/fragmentation.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run fragmentation``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
