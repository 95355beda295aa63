"""A ready locustfile: ``locust -f rmt/load/locustfile.py --rmt-scenario s.json HttpTraffic`` (or ``GrpcTraffic``).

It only composes: the two users and the coordinator; the scenario file says what traffic to send.
"""

from __future__ import annotations

from typing import Any

from locust import events

from rmt.load import TritonGrpcUser, TritonHttpUser, TritonTraffic, add_arguments

events.init_command_line_parser.add_listener(add_arguments)


@events.init.add_listener
def _attach(environment: Any, **_kw: Any) -> None:
    TritonTraffic().register(environment)


class HttpTraffic(TritonHttpUser):
    """Traffic over HTTP (``--host`` is the HTTP ``host:port``)."""


class GrpcTraffic(TritonGrpcUser):
    """Traffic over gRPC (``--host`` is the gRPC ``host:port``)."""
