"""cross_device_global: a ready rmt scenario (traffic, checks and expectations in ``cross_device_global.json``
beside this file).

Planted defect of cross_device: the same models with their resource declared global (G:1), so one budget serves both
GPUs and a saturated GPU 0 stops GPU 1; the cross_device verdict must fail (needs >= 2 GPUs and the rmt/zoo/multigpu
repository).

Run it with plain Locust (``locust -f rmt/scenarios/cross_device_global.py --host 127.0.0.1:8000``, add ``--headless``
or
``--master``/``--worker``) or end to end with ``rmt run cross_device_global``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
