"""The sidecar's HTTP API on 127.0.0.1 (unless asked otherwise): JSON views and the Prometheus exposition.

=================================  ==================================================================================
route                              answer
=================================  ==================================================================================
``GET /api/status``                collector name, interval, and per source: available, reason, counters, last error
``GET /api/latest``                the latest record of each source, values joined with their series' measure/labels
``GET /api/samples?after=SEQ``     records with ``seq > SEQ`` still in the history (``since=EPOCH_NS`` filters by
                                   time, ``limit=N`` caps), plus the series declared after ``SEQ``; ``last_seq`` is
                                   the cursor for the next call
``GET /api/series?after=SEQ``      series declarations
``GET /metrics``                   Prometheus text exposition (see :mod:`rmt.collect.exposition`)
=================================  ==================================================================================

Records and declarations have the fields of :class:`~rmt.core.samples.SampleRecord` and
:class:`~rmt.core.samples.SeriesRecord`; missing values are ``null``.
"""

from __future__ import annotations

import errno
import json
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from rmt.collect.core import Collector
from rmt.collect.exposition import registry_for
from rmt.core.errors import ConfigError
from rmt.core.rundir import json_safe


class CollectorApi:
    """Builds the answers of each route from a :class:`Collector` (no HTTP here: easy to test and reuse)."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.registry = registry_for(collector)

    def status(self) -> dict[str, Any]:
        """``/api/status``."""
        c = self.collector
        return {"collector": c.name, "interval_s": c.interval_s, "start_epoch_ns": c.start_epoch_ns,
                "running": c.running,
                "sources": [{"name": s.name, "available": s.info.available, "reason": s.info.reason,
                             "timeout_s": s.timeout_s, "samples_total": s.samples_total,
                             "errors_total": s.errors_total, "last_error": s.last_error, "last_seq": s.last_seq}
                            for s in c.statuses()]}

    def latest(self) -> dict[str, Any]:
        """``/api/latest``."""
        out: dict[str, Any] = {}
        for name, rec in self.collector.latest().items():
            row = asdict(rec)
            points = []
            for sid, value in row.pop("values").items():
                decl = self.collector.table.get(int(sid))
                points.append({"id": int(sid), "measure": decl.measure, "labels": decl.labels, "value": value})
            row["points"] = points
            out[name] = row
        return {"collector": self.collector.name, "sources": out}

    def samples(self, after: int, since: int, limit: int) -> dict[str, Any]:
        """``/api/samples``."""
        records = self.collector.samples_after(after, since)[:limit]
        last = records[-1].seq if records else after
        return {"collector": self.collector.name, "samples": [asdict(r) for r in records],
                "series": [asdict(s) for s in self.collector.series(after)], "last_seq": last}

    def series(self, after: int) -> dict[str, Any]:
        """``/api/series``."""
        return {"collector": self.collector.name, "series": [asdict(s) for s in self.collector.series(after)]}

    def metrics(self) -> bytes:
        """``/metrics``."""
        return generate_latest(self.registry)


class _Handler(BaseHTTPRequestHandler):
    server: _ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a scraper every second must not fill the console."""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(json_safe(payload), allow_nan=False).encode(), "application/json")

    def do_GET(self) -> None:
        """Route a GET."""
        api = self.server.api
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        try:
            after = int(query.get("after", ["0"])[0])
            since = int(query.get("since", ["0"])[0])
            limit = int(query.get("limit", ["100000"])[0])
        except ValueError:
            self._json(400, {"error": "after, since and limit must be integers (seq, epoch ns, count)"})
            return
        routes = {
            "/api/status": lambda: api.status(),
            "/api/latest": lambda: api.latest(),
            "/api/samples": lambda: api.samples(after, since, limit),
            "/api/series": lambda: api.series(after),
        }
        if parts.path == "/metrics":
            self._send(200, api.metrics(), CONTENT_TYPE_LATEST)
        elif parts.path in routes:
            self._json(200, routes[parts.path]())
        else:
            self._json(404, {"error": f"no route {parts.path}", "routes": [*routes, "/metrics"]})


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    api: CollectorApi


class ApiServer:
    """Serves :class:`CollectorApi` over HTTP in a background thread."""

    def __init__(self, collector: Collector, *, host: str = "127.0.0.1", port: int = 0) -> None:
        try:
            self._server = _ApiServer((host, port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use: choose another with --port, "
                                  f"or --port 0 for a free one") from None
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --host/--port") \
                from None
        self._server.api = CollectorApi(collector)
        self._thread = threading.Thread(target=self._server.serve_forever, name="rmt-collector-http", daemon=True)

    @property
    def url(self) -> str:
        """``http://host:port`` of the API."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ApiServer:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
