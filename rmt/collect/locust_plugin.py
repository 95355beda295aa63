"""Locust master-side plugin: sample the server during a Locust run and keep the samples in the run directory.

Attach it explicitly in a locustfile (nothing happens at import)::

    from locust import events
    from rmt.collect import locust_plugin

    events.init_command_line_parser.add_listener(locust_plugin.add_arguments)
    events.init.add_listener(locust_plugin.register)

Options (each also from its ``LOCUST_RMT_…`` environment variable):

- ``--rmt-collector URL`` (repeatable; env ``LOCUST_RMT_COLLECTOR``, comma-separated): poll remote sidecars
  (``rmt collect`` on the servers' hosts) and store their samples locally.
- ``--rmt-collect-server-url HOST:PORT`` / ``--rmt-collect-pid PID`` (+ ``--rmt-collect-metrics-url``): run an
  embedded collector for a server on this host.
- ``--rmt-collect-dir DIR``: the run directory (default ``runs/collect-<time>``); ``--rmt-collect-interval S``.

Only the master (or a local runner) collects; workers ignore the plugin. Latest values are served on the web UI at
``/rmt/collector`` (JSON) and in an ``RMT resources`` tab. Everything stops and is flushed on ``quitting``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from rmt.collect.remote import RemoteCollector
from rmt.collect.sidecar import Sidecar, SidecarOptions
from rmt.collect.target import ServerTarget
from rmt.core.errors import RmtError
from rmt.core.rundir import RunDir

log = logging.getLogger(__name__)
TAB_KEY = "rmt-resources"


def add_arguments(parser: Any) -> None:
    """``init_command_line_parser`` listener: the plugin's options (Locust's configargparse parser)."""
    group = parser.add_argument_group("rmt collectors")
    group.add_argument("--rmt-collector", action="append", default=[], metavar="URL", env_var="LOCUST_RMT_COLLECTOR",
                       help="URL of a remote rmt collector sidecar to poll; repeatable (env: comma-separated)")
    group.add_argument("--rmt-collect-server-url", metavar="HOST:PORT", env_var="LOCUST_RMT_COLLECT_SERVER_URL",
                       help="run an embedded collector for the tritonserver listening on HOST:PORT (HTTP)")
    group.add_argument("--rmt-collect-pid", type=int, metavar="PID", env_var="LOCUST_RMT_COLLECT_PID",
                       help="run an embedded collector for the tritonserver with this PID")
    group.add_argument("--rmt-collect-metrics-url", metavar="URL", env_var="LOCUST_RMT_COLLECT_METRICS_URL",
                       help="metrics URL of that server (default: from its command line)")
    group.add_argument("--rmt-collect-dir", metavar="DIR", env_var="LOCUST_RMT_COLLECT_DIR",
                       help="run directory for the samples (default runs/collect-<time>)")
    group.add_argument("--rmt-collect-interval", type=float, default=0.1, metavar="S",
                       env_var="LOCUST_RMT_COLLECT_INTERVAL", help="embedded sampling interval (default 0.1)")


def collector_urls(values: list[str] | str | None) -> list[str]:
    """The sidecar URLs of repeated options and/or comma-separated environment values."""
    if not values:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [u.strip() for item in items for u in item.strip("[]").split(",") if u.strip()]


class LocustCollectors:
    """What the plugin runs for one Locust environment: an embedded sidecar and/or remote pollers."""

    def __init__(self, run_dir: RunDir, sidecar: Sidecar | None, remotes: list[RemoteCollector]) -> None:
        self.run_dir = run_dir
        self.sidecar = sidecar
        self.remotes = remotes

    def start(self) -> None:
        """Start everything."""
        if self.sidecar is not None:
            self.sidecar.start()
        for remote in self.remotes:
            remote.start()

    def stop(self) -> None:
        """Stop everything and flush the run directory."""
        for remote in self.remotes:
            remote.stop()
        if self.sidecar is not None:
            self.sidecar.stop()
        try:
            self.run_dir.close()
        except RmtError as exc:  # a full disk: said, the run's own writer stops the run
            log.error("rmt collectors: %s", exc)

    def latest_rows(self) -> list[dict[str, Any]]:
        """One row per series: collector, source, series (measure and labels), value."""
        points: list[dict[str, Any]] = []
        if self.sidecar is not None:
            collector = self.sidecar.collector
            for rec in collector.latest().values():
                for sid, value in rec.values.items():
                    decl = collector.table.get(int(sid))
                    points.append({"collector": collector.name, "source": rec.source, "measure": decl.measure,
                                   "labels": decl.labels, "value": value, "ok": rec.ok})
        for remote in self.remotes:
            points += remote.latest_points()
        rows = []
        for p in points:
            labels = ",".join(f"{k}={v}" for k, v in sorted(p["labels"].items()))
            value = p["value"]
            shown = "NaN" if value is None or value != value else f"{value:.6g}"
            rows.append({"collector": p["collector"], "source": p["source"], "series": f"{p['measure']}{{{labels}}}",
                         "value": shown, "ok": p["ok"]})
        return rows


def build(options: Any) -> LocustCollectors | None:
    """The collectors the parsed options ask for (None when none)."""
    remotes_urls = collector_urls(getattr(options, "rmt_collector", None))
    server_url = getattr(options, "rmt_collect_server_url", None)
    pid = getattr(options, "rmt_collect_pid", None)
    if not remotes_urls and server_url is None and pid is None:
        return None
    folder = getattr(options, "rmt_collect_dir", None) or f"runs/collect-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = RunDir(Path(folder))
    sidecar = None
    if server_url is not None or pid is not None:
        target = ServerTarget(pid=pid, http_url=server_url,
                              metrics_url=getattr(options, "rmt_collect_metrics_url", None))
        sidecar = Sidecar(target, run_dir, SidecarOptions(
            interval_s=float(getattr(options, "rmt_collect_interval", 0.1)), port=None))
    remotes = [RemoteCollector(url, run_dir) for url in remotes_urls]
    run_dir.update_manifest(collectors={"embedded": sidecar is not None, "remote": [r.url for r in remotes]})
    return LocustCollectors(run_dir, sidecar, remotes)


def _attach_web_ui(web_ui: Any, collectors: LocustCollectors) -> None:
    """``/rmt/collector`` JSON and an ``RMT resources`` tab fed through ``/stats/requests``."""
    from flask import Response, request

    web_ui.template_args["extended_tabs"] = [
        *web_ui.template_args.get("extended_tabs", []), {"title": "RMT resources", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        *web_ui.template_args.get("extended_tables", []),
        {"key": TAB_KEY, "structure": [{"key": "collector", "title": "Collector"}, {"key": "source", "title": "Source"},
                                       {"key": "series", "title": "Series"}, {"key": "value", "title": "Value"}]}]

    @web_ui.app.route("/rmt/collector")
    def rmt_collector() -> Response:
        return Response(json.dumps({"rows": collectors.latest_rows()}), mimetype="application/json")

    @web_ui.app.after_request
    def extend_stats(response: Response) -> Response:
        if request.path != "/stats/requests" or not response.is_json:
            return response
        payload = response.get_json() or {}
        extended = [*payload.get("extended_stats", []), {"key": TAB_KEY, "data": collectors.latest_rows()}]
        response.set_data(json.dumps({**payload, "extended_stats": extended}))
        return response


def register(environment: Any, web_ui: Any = None, **_kwargs: Any) -> LocustCollectors | None:
    """``init`` listener: start the collectors the options ask for on the master / local runner."""
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return None
    try:
        collectors = build(environment.parsed_options)
    except RmtError as exc:
        log.error("rmt collectors: %s", exc)
        environment.process_exit_code = exc.exit_code
        return None
    if collectors is None:
        return None
    collectors.start()
    log.info("rmt collectors: writing %s", collectors.run_dir.path)
    web_ui = web_ui or getattr(environment, "web_ui", None)
    if web_ui is not None:
        _attach_web_ui(web_ui, collectors)

    def on_quitting(**_kw: Any) -> None:
        collectors.stop()

    environment.events.quitting.add_listener(on_quitting)
    return collectors
