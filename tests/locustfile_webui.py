"""Locustfile of the web-UI and report tests: rmt.load traffic + the collector plugin + the RMT web-UI plugin.

It only composes, attaching every plugin explicitly (nothing registers at import but the listeners below)::

    locust -f tests/locustfile_webui.py --host http://127.0.0.1:8000 --rmt-scenario s.json \\
        --rmt-run-dir RUN --rmt-collect-dir RUN --rmt-collect-server-url 127.0.0.1:8000 HttpTraffic
"""

from __future__ import annotations

from typing import Any

from locust import events

from rmt import webui
from rmt.collect import locust_plugin
from rmt.load import TritonHttpUser, TritonTraffic
from rmt.load import add_arguments as traffic_arguments

events.init_command_line_parser.add_listener(traffic_arguments)
events.init_command_line_parser.add_listener(locust_plugin.add_arguments)
events.init_command_line_parser.add_listener(webui.add_arguments)


@events.init.add_listener
def _attach(environment: Any, **_kw: Any) -> None:
    TritonTraffic().register(environment)
    collectors = locust_plugin.register(environment)
    webui.RmtWebUI(collectors=collectors).register(environment)


class HttpTraffic(TritonHttpUser):
    """Traffic over HTTP (``--host`` is the HTTP ``host:port``)."""
