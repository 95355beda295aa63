"""memory_growth: a ready rmt scenario (traffic, checks and expectations in ``memory_growth.json`` beside this file).

Memory growth by request pattern: leak_host (every request), leak_on_shape (big requests only), leak_on_error (the
error path only), each beside its healthy twin; phases baseline → big shapes → error path.

Run it with plain Locust (``locust -f rmt/scenarios/memory_growth.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run memory_growth``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
