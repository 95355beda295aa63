"""A trivial locustfile for the collector plugin test: one user that only waits; the plugin attached explicitly."""

from __future__ import annotations

from locust import User, constant, events, task

from rmt.collect import locust_plugin

events.init_command_line_parser.add_listener(locust_plugin.add_arguments)
events.init.add_listener(locust_plugin.register)


class Idle(User):
    """Does nothing: the test is about the collectors running beside the load."""

    wait_time = constant(0.5)

    @task
    def idle(self) -> None:
        """No request."""
