"""A locustfile for the stateful-path tests: the traffic coordinator with an HTTP and a gRPC user class (pick one
on the command line); the scenario comes from ``--rmt-scenario``."""

from __future__ import annotations

from typing import Any

from locust import events

from rmt.load import TritonGrpcUser, TritonHttpUser, TritonTraffic, add_arguments

events.init_command_line_parser.add_listener(add_arguments)


@events.init.add_listener
def _attach(environment: Any, **_kw: Any) -> None:
    TritonTraffic().register(environment)


class StateHttp(TritonHttpUser):
    """HTTP traffic."""


class StateGrpc(TritonGrpcUser):
    """gRPC traffic."""
