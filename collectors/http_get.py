"""One small HTTP GET client for every HTTP source (keep-alive, a hard timeout, failures as SourceUnavailable) and
the base of the sources that read one page of the server."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

from collectors.source import SourceInfo
from collectors.target import ServerTarget
from rmt.errors import SourceUnavailable

MAX_HEAD = 64 * 1024
"""Longest status line + headers accepted (an endpoint sending more is not an HTTP server we read)."""


class HttpProtocolError(Exception):
    """The peer's answer is not an HTTP/1.x response this client can read."""


class HttpGetter:
    """GET over a kept-alive connection per ``host:port``; any failure raises SourceUnavailable with the reason.

    A minimal HTTP/1.1 client on a plain socket (GET only; ``Content-Length``, chunked or read-to-close bodies):
    ``http.client`` parses every response's headers with the ``email`` package, which made a GET of Triton's 15 kB
    metrics page cost four times the socket I/O (about 0.4 ms of CPU per tick on the benchmark machine).
    """

    def __init__(self) -> None:
        self._conns: dict[tuple[str, int], socket.socket] = {}
        self._requests: dict[str, tuple[tuple[str, int], bytes]] = {}
        self._lock = threading.Lock()

    def _request(self, url: str) -> tuple[tuple[str, int], bytes]:
        """``((host, port), request bytes)`` of ``url``, built once per URL."""
        known = self._requests.get(url)
        if known is not None:
            return known
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise SourceUnavailable(f"cannot GET {url!r}: only http://HOST:PORT/path URLs are supported")
        key = (parts.hostname, parts.port or 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"
                   f"User-Agent: rmt-collector\r\n\r\n").encode("latin-1")
        if len(self._requests) < 64:
            self._requests[url] = (key, request)
        return key, request

    def get(self, url: str, timeout_s: float) -> bytes:
        """The body of a 200 response to ``GET url``; raises SourceUnavailable otherwise."""
        key, request = self._request(url)
        with self._lock:
            sock = self._conns.pop(key, None)
        for attempt in (0, 1):  # a kept-alive connection the server closed fails once: retry on a fresh one
            fresh = sock is None
            try:
                if sock is None:
                    sock = socket.create_connection(key, timeout=timeout_s)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                else:
                    sock.settimeout(timeout_s)
                sock.sendall(request)
                status, reason, body, keep = read_response(sock)
            except TimeoutError:
                if sock is not None:
                    sock.close()
                raise SourceUnavailable(f"timeout: GET {url} took over {timeout_s:.3g} s") from None
            except (OSError, HttpProtocolError) as exc:
                if sock is not None:
                    sock.close()
                sock = None
                if fresh or attempt:
                    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    raise SourceUnavailable(f"GET {url} failed: {reason}") from None
                continue
            if status != 200 or not keep:
                sock.close()
            else:
                with self._lock:
                    self._conns[key] = sock
            if status != 200:
                raise SourceUnavailable(f"GET {url} answered HTTP {status} {reason}")
            return body
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every kept-alive connection."""
        with self._lock:
            for sock in self._conns.values():
                sock.close()
            self._conns.clear()


def read_response(sock: socket.socket) -> tuple[int, str, bytes, bool]:
    """``(status, reason, body, keep_alive)`` of one HTTP/1.x response read from ``sock``."""
    buf = b""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if len(buf) > MAX_HEAD:
            raise HttpProtocolError("response headers too long")
        chunk = sock.recv(65536)
        if not chunk:
            raise HttpProtocolError("connection closed before a response" if not buf else "truncated response")
        buf += chunk
    lines = buf[:end].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpProtocolError(f"not an HTTP response: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    rest_bytes = buf[end + 4:]
    status = int(code)
    if status != 200:  # the body is not read: the caller closes the connection
        return status, reason, b"", False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, reason, _read_chunked(sock, rest_bytes), keep
    length = headers.get("content-length")
    if length is None:
        return status, reason, _read_to_close(sock, rest_bytes), False
    if not length.isdigit():
        raise HttpProtocolError(f"bad Content-Length {length[:20]!r}")
    return status, reason, _read_exactly(sock, rest_bytes, int(length)), keep


def _read_exactly(sock: socket.socket, have: bytes, n: int) -> bytes:
    chunks = [have]
    got = len(have)
    while got < n:
        chunk = sock.recv(max(65536, n - got))
        if not chunk:
            raise HttpProtocolError(f"body truncated at {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    data = b"".join(chunks)
    if len(data) != n:
        raise HttpProtocolError(f"{len(data) - n} bytes after the body")
    return data


def _read_to_close(sock: socket.socket, have: bytes) -> bytes:
    chunks = [have]
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_chunked(sock: socket.socket, have: bytes) -> bytes:
    buf = have
    body: list[bytes] = []
    while True:
        while (eol := buf.find(b"\r\n")) < 0:
            more = sock.recv(65536)
            if not more:
                raise HttpProtocolError("chunked body truncated")
            buf += more
        size_text = buf[:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        buf = buf[eol + 2:]
        if size == 0:  # trailers (rare) end with an empty line
            while not (buf.startswith(b"\r\n") or b"\r\n\r\n" in buf):
                more = sock.recv(65536)
                if not more:
                    raise HttpProtocolError("chunked body truncated")
                buf += more
            return b"".join(body)
        while len(buf) < size + 2:
            more = sock.recv(max(65536, size + 2 - len(buf)))
            if not more:
                raise HttpProtocolError("chunked body truncated")
            buf += more
        body.append(buf[:size])
        buf = buf[size + 2:]


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
