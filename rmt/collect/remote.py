"""Poll a remote sidecar's JSON API (``rmt collect`` on the server's host) and store its records locally.

Records keep their fields; ``collector`` becomes the sidecar's URL, so the series of several sidecars never collide
in one run directory. The ``after`` cursor guarantees every record still in the sidecar's history is fetched once;
a sidecar that is down is retried every poll (the run directory shows no samples for that time, and
:attr:`RemoteCollector.errors_total` counts the failed polls).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from rmt.collect.http_get import HttpGetter
from rmt.core.errors import RmtError, SourceUnavailable
from rmt.core.hosts import base_url
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE, SERIES_FILE

log = logging.getLogger(__name__)


class RemoteCollector:
    """A thread polling ``<url>/api/samples?after=SEQ`` every ``poll_s`` into ``run_dir``."""

    def __init__(self, url: str, run_dir: RunDir | None, *, poll_s: float = 1.0, timeout_s: float = 5.0,
                 http: HttpGetter | None = None) -> None:
        self.url = base_url(url, flag="--rmt-collector")
        self.run_dir = run_dir
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.http = http or HttpGetter()
        self.cursor = 0
        self.errors_total = 0
        self.last_error = ""
        self.samples_total = 0
        self._series: dict[int, dict[str, Any]] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"rmt-remote-{self.url}", daemon=True)

    def start(self) -> RemoteCollector:
        """Start polling."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Poll once more (the tail of the run), stop and join."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout_s + 5)
        self.http.close()

    def _loop(self) -> None:
        while True:
            self._poll_logged()
            if self._stop.wait(self.poll_s):
                self._poll_logged()  # the tail of the run
                return

    def _poll_logged(self) -> None:
        try:
            self.poll()
        except RmtError as exc:  # unavailable, or the run directory cannot be written (a full disk): said once
            self.errors_total += 1
            if str(exc) != self.last_error:
                log.warning("rmt: remote collector %s: %s", self.url, exc)
            self.last_error = str(exc)

    def poll(self) -> int:
        """Fetch and store the records after the cursor; returns how many samples arrived."""
        body = self.http.get(f"{self.url}/api/samples?after={self.cursor}", self.timeout_s)
        try:
            payload = json.loads(body)
            series, samples, last = payload["series"], payload["samples"], int(payload["last_seq"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceUnavailable(f"{self.url} is not an rmt collector API ({type(exc).__name__})") from None
        new_series = [dict(s, collector=self.url) for s in series if int(s["id"]) not in self._series]
        rows = [dict(r, collector=self.url) for r in samples]
        with self._lock:
            for s in new_series:
                self._series[int(s["id"])] = s
            for r in rows:
                self._latest[r["source"]] = r
            self.samples_total += len(rows)
            self.cursor = max(self.cursor, last)
        if self.run_dir is not None:
            if new_series:
                self.run_dir.append(SERIES_FILE, new_series, flush=True)
            if rows:
                self.run_dir.append(SAMPLES_FILE, rows)
        return len(rows)

    def latest_points(self) -> list[dict[str, Any]]:
        """The latest value of every series: ``{collector, source, measure, labels, value, ok}``."""
        with self._lock:
            out = []
            for rec in self._latest.values():
                for sid, value in rec["values"].items():
                    decl = self._series.get(int(sid))
                    if decl is not None:
                        out.append({"collector": self.url, "source": rec["source"], "measure": decl["measure"],
                                    "labels": decl["labels"], "value": value, "ok": rec["ok"]})
            return out
