"""fairness: a ready rmt scenario (traffic, checks and expectations in ``fairness.json`` beside this file).

Three models with equal demand share one CPU (rl_high/rl_low weighted 1:2 under R1:2, probe unlimited): served
shares follow the weighted max-min fair shares and no stream starves.

Run it with plain Locust (``locust -f rmt/scenarios/fairness.py --host 127.0.0.1:8000``, add ``--headless`` or
``--master``/``--worker``) or end to end with ``rmt run fairness``.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
