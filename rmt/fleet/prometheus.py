"""A small reader of Prometheus' HTTP API: ``/api/v1/query_range`` matrices as numpy arrays.

Only what :mod:`rmt.fleet` needs: one range query returns every series matching a selector, each as its labels and
``(epoch s, value)`` samples at the query's steps. Prometheus leaves a step out when the series had no sample within
its look-back or was marked stale (a failed scrape, a vanished target): those steps are *missing*, and stay missing
here — a gap, never a value. Prometheus answers at most 11 000 points per series, so :func:`plan_step` widens the
step of a long range.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np

from rmt.core.errors import ConfigError, SourceUnavailable
from rmt.core.hosts import parse_address

MAX_POINTS = 11_000
"""Prometheus refuses a range query with more points per series than this."""


@dataclass(eq=False)
class PromSeries:
    """One series of a range query: its labels (``__name__`` included) and its samples."""

    labels: dict[str, str]
    t_s: np.ndarray
    """Epoch seconds of each sample (the query's steps at which the series had a value)."""
    values: np.ndarray
    """float64 values; Prometheus' ``NaN`` stays NaN."""

    @property
    def name(self) -> str:
        """The metric name."""
        return self.labels.get("__name__", "")


def plan_step(start_s: float, end_s: float, step_s: float) -> float:
    """``step_s``, widened so the range has at most :data:`MAX_POINTS` points per series."""
    if not end_s > start_s:
        raise ConfigError(f"the time range is empty ({start_s:.0f} … {end_s:.0f}): pass an --end after --start")
    if not step_s > 0:
        raise ConfigError(f"--step {step_s:g} s: give a positive step, e.g. 1s")
    return max(step_s, (end_s - start_s) / (MAX_POINTS - 1))


class PrometheusClient:
    """Range queries against one Prometheus server (``base_url`` such as ``http://127.0.0.1:9090``)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, opener: Any = None) -> None:
        address = parse_address(base_url, flag="--prometheus")
        if address.scheme not in ("http", "https"):
            raise ConfigError(f"--prometheus {base_url!r} is not a URL: write e.g. http://prometheus:9090")
        self.base_url = address.base_url
        self.timeout_s = timeout_s
        self._open = opener or urllib.request.urlopen

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with self._open(url, timeout=self.timeout_s) as reply:
                body = reply.read()
        except urllib.error.HTTPError as exc:  # Prometheus explains a bad query in the JSON body of a 400/422
            body = exc.read()
            try:
                error = json.loads(body).get("error", "")
            except ValueError:
                error = body[:200].decode(errors="replace")
            raise SourceUnavailable(f"Prometheus at {self.base_url} refused {path} (HTTP {exc.code}: {error}): "
                                    "check the query and the time range") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceUnavailable(f"cannot reach Prometheus at {self.base_url} ({reason}): pass the URL of a "
                                    "running Prometheus with --prometheus") from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise SourceUnavailable(f"{self.base_url}{path} did not answer JSON: is --prometheus the URL of a "
                                    "Prometheus server?") from None
        if not isinstance(doc, dict) or doc.get("status") != "success":
            raise SourceUnavailable(f"Prometheus at {self.base_url} answered {path} with an error: "
                                    f"{doc.get('error') if isinstance(doc, dict) else doc!r}")
        return doc.get("data")

    def query_range(self, query: str, start_s: float, end_s: float, step_s: float) -> list[PromSeries]:
        """Every series of ``query`` over ``[start_s, end_s]`` at ``step_s`` (see :func:`plan_step`)."""
        data = self._get("/api/v1/query_range", {"query": query, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}",
                                                 "step": f"{plan_step(start_s, end_s, step_s):.3f}"})
        if not isinstance(data, dict) or data.get("resultType") != "matrix":
            raise SourceUnavailable(f"Prometheus at {self.base_url} did not answer a matrix for {query!r}")
        out = []
        for item in data.get("result") or []:
            rows = item.get("values") or []
            t = np.array([float(r[0]) for r in rows], dtype=np.float64)
            v = np.array([_value(r[1]) for r in rows], dtype=np.float64)
            out.append(PromSeries(dict(item.get("metric") or {}), t, v))
        return out


    def query(self, query: str) -> list[tuple[dict[str, str], float]]:
        """The instant vector of ``query`` now: ``(labels, value)`` per series (for polling a scrape's arrival)."""
        data = self._get("/api/v1/query", {"query": query})
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise SourceUnavailable(f"Prometheus at {self.base_url} did not answer a vector for {query!r}")
        return [(dict(item.get("metric") or {}), _value(item["value"][1])) for item in data.get("result") or []]


def _value(text: str) -> float:
    """Prometheus' sample value string (``"1.5"``, ``"NaN"``, ``"+Inf"``) as a float."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
