"""any: the locustfile of a scenario definition that has no locustfile of its own beside it.

``rmt run ./mine.json`` runs a user's definition through this file when no ``mine.py`` lies beside it; with plain
Locust name the definition explicitly::

    locust -f $(rmt scenarios --path any) --rmt-definition ./mine.json --host 127.0.0.1:8000

The definition comes from ``--rmt-definition FILE`` (or ``LOCUST_RMT_DEFINITION``), on the master and every worker.
"""

from locust import events

from rmt.load import TritonHttpUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonHttpUser):
    """HTTP traffic of the scenario."""
