"""cross_device: a ready rmt scenario (traffic, checks and expectations in ``cross_device.json`` beside this file).

probe_gpu and leak_gpu spread over two GPUs (needs >= 2 GPUs and the zoo/gpu repository): device-memory leak per GPU
with per-device rate-limit accounting.

Run it with plain Locust (``locust -f locustfiles/cross_device.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run cross_device``.
"""

from locust import events

from rmt.run.compose import attach
from rmt_users import TritonHttpUser

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
