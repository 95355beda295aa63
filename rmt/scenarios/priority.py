"""priority: a ready rmt scenario (traffic, checks and expectations in ``priority.json`` beside this file).

queue_priority overloaded by priority-1 and priority-2 requests: level 1 is served first, so its p99 stays below
level 2's, and level 2's bounded queue rejects the excess.

Run it with plain Locust (``locust -f rmt/scenarios/priority.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run priority``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
