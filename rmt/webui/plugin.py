"""The RMT tab of Locust's web UI and a live chart page; attach explicitly on the master (or a local runner).

::

    from locust import events
    from rmt.collect import locust_plugin
    from rmt import webui
    from rmt.load import TritonTraffic

    @events.init.add_listener
    def _attach(environment, **_kw):
        TritonTraffic().register(environment)
        collectors = locust_plugin.register(environment)
        webui.RmtWebUI(collectors=collectors).register(environment)

What it adds to the web app (only when a web UI runs; workers ignore it):

- one **RMT** tab (Locust's ``extended_tabs``/``extended_tables``; the collector plugin's raw "RMT resources" tab
  is folded into it) whose rows come live with every ``/stats/requests`` poll (``extended_stats``): per-GPU and
  per-process memory and pools (now, Δ since start, slope, live leak-verdict preview) and per stream
  (model × priority × pattern) the completed rate, totals and p50/p99 latency in µs;
- ``/rmt/charts``: a page of inline SVG charts (memory Δ over time, rate and p99 per stream) refreshed every
  ``--rmt-ui-interval`` seconds, with the collectors' latest raw values;
- ``/rmt/live.json``: the same rows as JSON.
"""

from __future__ import annotations

import json
import logging
import time
from html import escape
from typing import Any

import gevent
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from rmt.core.windows import NS_PER_S, WindowState
from rmt.report import svg
from rmt.webui.live import LiveMemory, LivePoint, LiveStreams, summary_row

log = logging.getLogger(__name__)
TAB_KEY = "rmt"
COLLECTOR_TAB_KEY = "rmt-resources"
"""The collector plugin's own tab (:data:`rmt.collect.locust_plugin.TAB_KEY`), folded into ours."""
CHARTS_PATH = "/rmt/charts"
STRUCTURE = [{"key": "section", "title": "Section"}, {"key": "subject", "title": "Series / stream"},
             {"key": "now", "title": "Now"}, {"key": "delta", "title": "Δ since start / totals"},
             {"key": "slope", "title": "Slope"}, {"key": "latency", "title": "Latency p50 / p99"},
             {"key": "preview", "title": "Live verdict preview"}]


def add_arguments(parser: Any) -> None:
    """``init_command_line_parser`` listener: the plugin's options."""
    group = parser.add_argument_group("rmt web UI")
    group.add_argument("--rmt-ui-interval", type=float, default=1.0, metavar="S", env_var="LOCUST_RMT_UI_INTERVAL",
                       help="how often the RMT tab polls the collectors and refreshes its rows (default 1 s)")


def collector_points(collectors: Any) -> list[LivePoint]:
    """The latest value of every series of a :class:`rmt.collect.locust_plugin.LocustCollectors` (embedded sidecar
    and polled remotes); NaN where a value is missing."""
    if collectors is None:
        return []
    points: list[LivePoint] = []
    sidecar = getattr(collectors, "sidecar", None)
    if sidecar is not None:
        collector = sidecar.collector
        for rec in collector.latest().values():
            for sid, value in rec.values.items():
                decl = collector.table.get(int(sid))
                points.append(LivePoint(decl.measure, dict(decl.labels), math_value(value)))
    for remote in getattr(collectors, "remotes", []):
        points += [LivePoint(p["measure"], dict(p["labels"]), math_value(p["value"])) for p in remote.latest_points()]
    return points


def math_value(value: Any) -> float:
    """A sample value as float (None → NaN)."""
    return float("nan") if value is None else float(value)


class RmtWebUI:
    """Live memory and stream rows for the RMT tab, the chart page, and their Flask routes."""

    def __init__(self, *, collectors: Any = None, clock: Any = time.time) -> None:
        """``collectors``: what :func:`rmt.collect.locust_plugin.register` returned (None: no memory rows);
        ``clock``: epoch seconds. Stream rows come through Locust's events (``request``, ``worker_report``)."""
        self.collectors = collectors
        self.clock = clock
        self.memory = LiveMemory()
        self.streams = LiveStreams()
        self.rows: list[dict[str, Any]] = []
        self.interval_s = 1.0
        self._loop: Any = None

    # -- attaching ---------------------------------------------------------------------------------------------------
    def register(self, environment: Any, web_ui: Any = None, **_kw: Any) -> RmtWebUI | None:
        """Subscribe to the request/worker events and extend the web UI (master or local runner only)."""
        runner = environment.runner
        if isinstance(runner, WorkerRunner):
            return None
        options = environment.parsed_options
        self.interval_s = float(getattr(options, "rmt_ui_interval", 1.0) or 1.0) if options else 1.0
        if isinstance(runner, MasterRunner):
            environment.events.worker_report.add_listener(self.on_worker_report)
        elif isinstance(runner, LocalRunner) or runner is None:
            environment.events.request.add_listener(self.on_request)
        environment.events.quitting.add_listener(self._on_quitting)
        web_ui = web_ui or getattr(environment, "web_ui", None)
        if web_ui is not None:
            self.attach(web_ui)
            self._loop = gevent.spawn(self._poll)
        return self

    def attach(self, web_ui: Any) -> None:
        """Add the RMT tab (folding the collector plugin's tab into it), the routes and the live rows."""
        from flask import Response, request

        args = web_ui.template_args
        args["extended_tabs"] = [t for t in args.get("extended_tabs", []) if t.get("key") != COLLECTOR_TAB_KEY] + [
            {"title": "RMT", "key": TAB_KEY}]
        args["extended_tables"] = [t for t in args.get("extended_tables", []) if t.get("key") != COLLECTOR_TAB_KEY
                                   ] + [{"key": TAB_KEY, "structure": STRUCTURE}]

        @web_ui.app.route("/rmt/live.json")
        def rmt_live() -> Response:
            return Response(json.dumps({"rows": self.rows}), mimetype="application/json")

        @web_ui.app.route(CHARTS_PATH)
        def rmt_charts() -> Response:
            return Response(self.chart_page(), mimetype="text/html")

        @web_ui.app.route(f"{CHARTS_PATH}/fragment")
        def rmt_charts_fragment() -> Response:
            return Response(self.chart_fragment(), mimetype="text/html")

        @web_ui.app.after_request
        def extend_stats(response: Response) -> Response:
            if request.path != "/stats/requests" or not response.is_json:
                return response
            payload = response.get_json() or {}
            # /stats/requests is memoized: the same response object comes back, so replace our entry, never append
            extended = [e for e in payload.get("extended_stats", []) if e.get("key") != TAB_KEY]
            response.set_data(json.dumps({**payload, "extended_stats": [*extended, {"key": TAB_KEY,
                                                                                      "data": self.rows}]}))
            return response

    # -- feeding -----------------------------------------------------------------------------------------------------
    def on_request(self, request_type: str, name: str, response_time: float, response_length: int = 0,
                   exception: Any = None, context: Any = None, **_kw: Any) -> None:
        """Locust ``request`` event (local runner): one outcome of stream ``name`` (response_time in ms; a
        streaming request's context carries its responses, outcome and time to first response)."""
        context = context or {}
        if "responses" in context:
            first = context.get("first_response_ms")
            self.streams.on_request(name, self.clock(), float(response_time if first is None else first) * 1000.0,
                                    exception is None, (int(context["responses"]),
                                                        context.get("outcome") == "cancelled"))
            return
        self.streams.on_request(name, self.clock(), float(response_time) * 1000.0, exception is None)

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        """``worker_report`` (master): the windows a worker closed since its last report (rmt.load' wire form)."""
        for key, wire in (data.get("rmt") or {}).get("windows", []):
            state = WindowState.from_wire(wire)
            counts = dict(zip(WindowState.COUNTERS, state.counts, strict=True))
            failed = sum(counts[c] for c in ("failed_timeout", "failed_rejected", "failed_server", "failed_client"))
            streamed = (counts["responses"], counts["cancelled"]) \
                if counts["responses"] or counts["cancelled"] or counts["finals"] else None
            self.streams.on_window(str(key[2]), int(key[0]) // NS_PER_S, counts["succeeded"], failed, state.latency,
                                   streamed)

    def refresh(self) -> list[dict[str, Any]]:
        """Poll the collectors once and rebuild the tab rows."""
        now = self.clock()
        if self.collectors is not None:
            self.memory.add(now, collector_points(self.collectors))
        rows = self.memory.rows()
        if self.collectors is None:
            rows.append(summary_row("memory", "none", "no collector attached (--rmt-collect-server-url / "
                                                   "--rmt-collector): no memory rows"))
        elif not any(r["section"] == "gpu" for r in rows):
            rows.insert(0, summary_row("gpu", "none", "no GPU memory series (no NVML GPU on the collector's host)"))
        rows += self.streams.rows(now)
        rows.append(summary_row("charts", CHARTS_PATH, "live charts of these rows (open this path)"))
        self.rows = rows
        return rows

    def _poll(self) -> None:
        start = time.monotonic()
        k = 0
        while True:
            try:
                self.refresh()
            except Exception:  # a broken poll must not end the loop; log it with its traceback
                log.exception("rmt web UI: refreshing the RMT tab failed")
            k += 1
            gevent.sleep(max(0.0, start + k * self.interval_s - time.monotonic()))

    def _on_quitting(self, **_kw: Any) -> None:
        if self._loop is not None:
            self._loop.kill(block=False)

    # -- chart page --------------------------------------------------------------------------------------------------
    def chart_fragment(self) -> str:
        """Inline SVG charts of the live data, and the collectors' latest raw values."""
        now = self.clock()
        mem = [svg.Line(k.split("{")[0] + "{" + k.split("{", 1)[1][:40] if "{" in k else k,
                        [x - now for x in t], d) for k, t, d in self.memory.chart_lines()]
        lines = self.streams.chart_lines(now)
        parts = [svg.line_chart(svg.Chart(mem, svg.Axis("seconds before now", unit="s"),
                                          svg.Axis("Δ bytes since start", unit="bytes"),
                                          title="memory growth (largest 8)")),
                 svg.line_chart(svg.Chart([svg.Line(s, [x - now for x in t], y, step=True) for s, t, y in
                                           lines["rate"]], svg.Axis("seconds before now", unit="s"),
                                          svg.Axis("completed / s"), title="rate per stream")),
                 svg.line_chart(svg.Chart([svg.Line(s, [x - now for x in t], y) for s, t, y in lines["p99"]],
                                          svg.Axis("seconds before now", unit="s"),
                                          svg.Axis("p99 latency", log=True, unit="us"), title="p99 per stream"))]
        raw = self.collectors.latest_rows() if self.collectors is not None else []
        table = "".join(f"<tr><td>{escape(str(r['collector']))}</td><td>{escape(str(r['series']))}</td>"
                        f"<td>{escape(str(r['value']))}</td></tr>" for r in raw)
        return ("".join(f"<figure>{p}</figure>" for p in parts)
                + f"<h2>Collectors' latest values</h2><table><tr><th>collector</th><th>series</th><th>value</th>"
                  f"</tr>{table}</table>")

    def chart_page(self) -> str:
        """A page that reloads :meth:`chart_fragment` every interval (inline script, no external resource)."""
        ms = int(self.interval_s * 2000)
        return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>RMT live charts</title><style>"
                "body{font:13px system-ui,sans-serif;margin:16px}figure{display:inline-block;margin:6px}"
                "svg .tick{fill:#444;font-size:11px}svg .axis{font-size:12px}table{border-collapse:collapse}"
                "td,th{border:1px solid #ddd;padding:2px 6px;font-size:12px}</style></head><body>"
                "<h1>RMT live charts</h1><p><a href='/'>back to Locust</a></p><div id='charts'>"
                f"{self.chart_fragment()}</div><script>setInterval(function(){{fetch('{CHARTS_PATH}/fragment')"
                ".then(function(r){return r.text()}).then(function(t){document.getElementById('charts').innerHTML=t})"
                f"}}, {ms});</script></body></html>")
