"""One small HTTP GET client for every HTTP source (keep-alive, a hard timeout, failures as SourceUnavailable) and
the base of the sources that read one page of the server."""

from __future__ import annotations

import http.client
import threading
from urllib.parse import urlsplit

from collectors.source import SourceInfo
from collectors.target import ServerTarget
from rmt.errors import SourceUnavailable


class HttpGetter:
    """GET over a kept-alive connection per ``host:port``; any failure raises SourceUnavailable with the reason."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, int], http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    def get(self, url: str, timeout_s: float) -> bytes:
        """The body of a 200 response to ``GET url``; raises SourceUnavailable otherwise."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise SourceUnavailable(f"cannot GET {url!r}: only http://HOST:PORT/path URLs are supported")
        key = (parts.hostname, parts.port or 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            conn = self._conns.pop(key, None)
        for attempt in (0, 1):  # a kept-alive connection the server closed fails once: retry on a fresh one
            fresh = conn is None
            if conn is None:
                conn = http.client.HTTPConnection(key[0], key[1], timeout=timeout_s)
            conn.timeout = timeout_s
            if conn.sock is not None:
                conn.sock.settimeout(timeout_s)
            try:
                conn.request("GET", path, headers={"Accept-Encoding": "identity"})
                resp = conn.getresponse()
                body = resp.read()
            except TimeoutError:
                conn.close()
                raise SourceUnavailable(f"timeout: GET {url} took over {timeout_s:.3g} s") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = None
                if fresh or attempt:
                    reason = getattr(exc, "strerror", None) or type(exc).__name__
                    raise SourceUnavailable(f"GET {url} failed: {reason}") from None
                continue
            if resp.status != 200:
                conn.close()
                raise SourceUnavailable(f"GET {url} answered HTTP {resp.status} {resp.reason}")
            with self._lock:
                self._conns[key] = conn
            return body
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every kept-alive connection."""
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()


class HttpSource:
    """Base of the sources that GET one page of the server each tick (keep-alive, per-source timeout)."""

    name = ""
    missing_url = "URL unknown until the server is found"
    """The gap reason while :meth:`url` is None (names the flag that gives it)."""

    def __init__(self, target: ServerTarget, *, timeout_s: float = 1.0, http: HttpGetter | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.http = http or HttpGetter()

    def url(self) -> str | None:
        """The page to GET (None while unknown)."""
        raise NotImplementedError

    def open(self) -> SourceInfo:
        """Always available; the endpoint may come later (gaps until then)."""
        return SourceInfo(details={"url": self.url()})

    def close(self) -> None:
        """Close the kept-alive connection."""
        self.http.close()

    def fetch(self) -> tuple[str, bytes]:
        """``(url, body)`` of one GET; SourceUnavailable for a gap."""
        url = self.url()
        if url is None:
            raise SourceUnavailable(self.missing_url)
        return url, self.http.get(url, self.timeout_s)
