"""cross_device: a ready rmt scenario (traffic, checks and expectations in ``cross_device.json`` beside this file).

Rate-limiter resources per device on two GPUs: xdev_hog (2 instances on GPU 0) keeps GPU 0's budget R:1:0 taken while
xdev_split (1 instance on GPU 0, 4 on GPU 1, budget R:4:1) runs on; GPU 1 must keep executing while GPU 0 is
saturated (needs >= 2 GPUs and the rmt/zoo/multigpu repository; planted twin: cross_device_global).

Run it with plain Locust (``locust -f rmt/scenarios/cross_device.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run cross_device``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
