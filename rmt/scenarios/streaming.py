"""streaming: a ready rmt scenario (traffic, checks and expectations in ``streaming.json`` beside this file).

Streaming (decoupled) models over gRPC ``ModelStreamInfer``: stream_leak_on_cancel (keeps a cancelled request's
state) beside its twin; phases complete → cancel (80 % of the requests cancelled by the client after 2 responses);
stream_n at priorities 1 and 2.

Run it with plain Locust (``locust -f rmt/scenarios/streaming.py --host 127.0.0.1:8001``, the gRPC port; add
``--headless`` or ``--master``/``--worker``) or end to end with ``rmt run streaming``.
"""

from locust import events

from rmt.load import TritonGrpcUser
from rmt.run.compose import attach

attach(events, __file__)


class Traffic(TritonGrpcUser):
    """gRPC streaming traffic of the scenario."""
