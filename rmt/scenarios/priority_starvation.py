"""priority_starvation: a ready rmt scenario (traffic, checks and expectations in ``priority_starvation.json``).

Strict request priority starving the low level: 32 closed-loop priority-1 users keep queue_priority's one instance
busy with full batches, so its priority-2 requests are never served; ``starvation`` fails on the priority-2 stream.

Run it with plain Locust (``locust -f rmt/scenarios/priority_starvation.py --host 127.0.0.1:8000``, add
``--headless`` or ``--master``/``--worker``) or end to end with ``rmt run priority_starvation``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
