"""One small HTTP GET client for every HTTP source (keep-alive, a hard timeout, failures as SourceUnavailable) and
the base of the sources that read one page of the server.

A GET is a :class:`PendingGet`: sent on a non-blocking socket, its answer taken by :meth:`PendingGet.poll` as it
arrives, never blocking. :meth:`HttpGetter.get` waits for it (with a deadline) for the sources that read in their own
thread; the collector's shared sampling thread instead sends the GET at the start of a tick, reads the other sources
meanwhile, and takes the answer when it is there (see :mod:`rmt.collect.core`): no thread wake-up of its own.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time

from rmt.collect.series import Reading
from rmt.collect.source import SourceInfo
from rmt.collect.target import ServerTarget
from rmt.core.errors import ConfigError, SourceUnavailable
from rmt.core.hosts import parse_address

MAX_HEAD = 64 * 1024
"""Longest status line + headers accepted (an endpoint sending more is not an HTTP server we read)."""

Address = tuple[str, int]


class HttpProtocolError(Exception):
    """The peer's answer is not an HTTP/1.x response this client can read."""


class ResponseReader:
    """Reads one HTTP/1.x response fed in pieces (``Content-Length``, chunked or read-to-close body)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: tuple[int, str, bool, str, int] | None = None
        """``(status, reason, keep_alive, framing, body start)`` once the headers are in."""
        self._length = 0
        """The ``Content-Length`` of a ``length``-framed body."""

    @property
    def empty(self) -> bool:
        """Whether nothing of the response has arrived yet."""
        return not self._buf

    def feed(self, data: bytes) -> tuple[int, str, bytes, bool] | None:
        """Add ``data`` (``b""``: the peer closed); ``(status, reason, body, keep_alive)`` once the response is
        complete, None while more is to come. Raises HttpProtocolError for what is not a response."""
        eof = not data
        self._buf += data
        head = self._head
        if head is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEAD:
                    raise HttpProtocolError("response headers too long")
                if eof:
                    raise HttpProtocolError("connection closed before a response" if not self._buf
                                            else "truncated response")
                return None
            head = self._head = self._parse_head(end)
        status, reason, keep, framing, start = head
        if status != 200:  # the body is not read: the caller closes the connection
            return status, reason, b"", False
        if framing == "chunked":
            body = _dechunk(self._buf, start)
            if body is None:
                if eof:
                    raise HttpProtocolError("chunked body truncated")
                return None
            return status, reason, body, keep
        if framing == "close":
            return (status, reason, bytes(self._buf[start:]), False) if eof else None
        got = len(self._buf) - start
        if got < self._length:
            if eof:
                raise HttpProtocolError(f"body truncated at {got} of {self._length} bytes")
            return None
        if got > self._length:
            raise HttpProtocolError(f"{got - self._length} bytes after the body")
        return status, reason, bytes(self._buf[start:]), keep

    def _parse_head(self, end: int) -> tuple[int, str, bool, str, int]:
        lines = self._buf[:end].decode("latin-1").split("\r\n")
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
        length = headers.get("content-length")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            framing = "chunked"
        elif length is None:
            framing, keep = "close", False
        elif not length.isdigit():
            raise HttpProtocolError(f"bad Content-Length {length[:20]!r}")
        else:
            framing, self._length = "length", int(length)
        return int(code), reason, keep, framing, end + 4


def _dechunk(buf: bytearray, pos: int) -> bytes | None:
    """The body of a complete chunked encoding starting at ``buf[pos]``, None while incomplete."""
    body: list[bytes] = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        pos = eol + 2
        if size == 0:  # trailers (rare) end with an empty line
            if buf.startswith(b"\r\n", pos) or buf.find(b"\r\n\r\n", pos - 2) >= 0:
                return b"".join(body)
            return None
        if len(buf) < pos + size + 2:
            return None
        body.append(bytes(buf[pos:pos + size]))
        pos += size + 2


class PendingGet:
    """One GET in flight on a non-blocking socket; :meth:`poll` takes what has arrived and never blocks.

    A kept-alive connection the server closed meanwhile fails once: the GET is sent again on a fresh connection.
    Call :meth:`cancel` to abandon it (a timeout); a finished GET hands its connection back to the getter."""

    def __init__(self, getter: HttpGetter, url: str, key: Address, request: bytes, sock: socket.socket | None) -> None:
        self.url = url
        self._getter = getter
        self._key = key
        self._request = request
        self._reused = sock is not None
        self._sock: socket.socket | None = sock if sock is not None else getter.connect(key)
        self._sent = 0
        self._reader = ResponseReader()
        self.done = False
        """Answered (or failed, or cancelled): the connection is no longer this GET's."""

    def poll(self) -> bytes | None:
        """The body of the 200 answer once complete, None while it is not; SourceUnavailable when it failed."""
        return self._progress(receive=True)

    def send(self) -> None:
        """Send the request as far as the socket takes it (the rest goes at the next :meth:`poll`)."""
        self._progress(receive=False)

    def _progress(self, *, receive: bool) -> bytes | None:
        sock = self._sock
        if self.done or sock is None:
            raise SourceUnavailable(f"GET {self.url}: polled after it ended")
        try:
            while self._sent < len(self._request):  # a connect in progress: BlockingIOError until it is done
                self._sent += sock.send(self._request[self._sent:])
            if not receive:
                return None
            while (answer := self._reader.feed(sock.recv(262144))) is None:
                pass
        except (BlockingIOError, InterruptedError):
            return None
        except (OSError, HttpProtocolError) as exc:
            self._close()
            if self._reused and self._reader.empty:  # the server closed the kept-alive connection: once more
                self._reused = False
                self._sock, self._sent = self._getter.connect(self._key), 0
                return self._progress(receive=receive)
            self.done = True
            self._getter.failed(self._key)
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise SourceUnavailable(f"GET {self.url} failed: {reason}") from None
        status, reason, body, keep = answer
        self.done = True
        if status == 200 and keep:
            self._getter.keep(self._key, sock)
            self._sock = None
        else:
            self._close()
        if status != 200:
            raise SourceUnavailable(f"GET {self.url} answered HTTP {status} {reason}")
        return body

    def wait(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` until :meth:`poll` may progress; False on timeout."""
        sock = self._sock
        if sock is None:
            return True
        poller = select.poll()
        poller.register(sock, select.POLLOUT if self._sent < len(self._request) else select.POLLIN)
        return bool(poller.poll(max(0.0, timeout_s) * 1000))

    def cancel(self) -> None:
        """Abandon the GET (its connection is closed: an answer may still be on its way)."""
        if not self.done:
            self.done = True
            self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class HttpGetter:
    """GET over a kept-alive connection per ``host:port``; any failure raises SourceUnavailable with the reason.

    A minimal HTTP/1.1 client on a plain socket (GET only; ``Content-Length``, chunked or read-to-close bodies):
    ``http.client`` parses every response's headers with the ``email`` package, which costs a GET of Triton's metrics
    page several times its socket I/O (docs/benchmarks.md).
    Connections are non-blocking (connect included): a host's name is resolved once, at its first GET.
    """

    def __init__(self) -> None:
        self._conns: dict[Address, socket.socket] = {}
        self._requests: dict[str, tuple[Address, bytes]] = {}
        self._addrs: dict[Address, list[tuple[int, Address]]] = {}
        self._lock = threading.Lock()

    def _request(self, url: str) -> tuple[Address, bytes]:
        """``((host, port), request bytes)`` of ``url``, built once per URL."""
        known = self._requests.get(url)
        if known is not None:
            return known
        try:
            address = parse_address(url, 80, flag="URL")
        except ConfigError as exc:
            raise SourceUnavailable(str(exc)) from None
        if address.scheme != "http":
            raise SourceUnavailable(f"cannot GET {url!r}: only http://HOST:PORT/path URLs are supported")
        assert address.port is not None
        key = (address.host, address.port)
        path = (address.path or "/") + (f"?{address.query}" if address.query else "")
        host = address.netloc
        request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"
                   f"User-Agent: rmt-collector\r\n\r\n").encode("latin-1")
        if len(self._requests) < 64:
            self._requests[url] = (key, request)
        return key, request

    def start(self, url: str) -> PendingGet:
        """Send ``GET url`` (on the kept-alive connection, else a new one) without waiting for anything."""
        key, request = self._request(url)
        with self._lock:
            sock = self._conns.pop(key, None)
        pending = PendingGet(self, url, key, request, sock)
        pending.send()
        return pending

    def get(self, url: str, timeout_s: float) -> bytes:
        """The body of a 200 response to ``GET url``; raises SourceUnavailable otherwise."""
        deadline = time.monotonic() + timeout_s
        pending = self.start(url)
        try:
            while (body := pending.poll()) is None:
                left = deadline - time.monotonic()
                if left <= 0 or not pending.wait(left):
                    raise SourceUnavailable(f"timeout: GET {url} took over {timeout_s:.3g} s")
        finally:
            pending.cancel()
        return body

    def connect(self, key: Address) -> socket.socket:
        """A new non-blocking connection to ``key`` (connecting: a send fails with BlockingIOError until done).

        After a failed connection the next one tries the host's next address (``localhost`` may be ``::1`` or
        127.0.0.1)."""
        addrs = self._addrs.get(key)
        if addrs is None:
            try:
                infos = socket.getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise SourceUnavailable(f"cannot resolve {key[0]}: {exc.strerror}") from None
            addrs = self._addrs[key] = [(family, (str(addr[0]), int(addr[1]))) for family, _, _, _, addr in infos]
        family, addr = addrs[0]
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise SourceUnavailable(f"no socket for {key[0]}:{key[1]}: {exc.strerror}") from None
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.failed(key)
            raise SourceUnavailable(f"connect to {key[0]}:{key[1]} failed: {errno.errorcode.get(err, err)}")
        return sock

    def failed(self, key: Address) -> None:
        """A new connection to ``key`` failed: the next one tries the host's next address, if it has another."""
        addrs = self._addrs.get(key)
        if addrs is not None and len(addrs) > 1:
            addrs.append(addrs.pop(0))

    def keep(self, key: Address, sock: socket.socket) -> None:
        """Keep ``sock`` alive for the next GET to ``key``."""
        with self._lock:
            old = self._conns.pop(key, None)
            self._conns[key] = sock
        if old is not None:
            old.close()

    def close(self) -> None:
        """Close every kept-alive connection."""
        with self._lock:
            for sock in self._conns.values():
                sock.close()
            self._conns.clear()


class HttpSource:
    """Base of the sources that GET one page of the server each tick (keep-alive, per-source timeout).

    A ``split`` source: when it shares the collector's sampling thread, :meth:`begin` sends the GET at the start of
    a tick and :meth:`poll` takes the answer once it is there (:meth:`cancel` abandons it); :meth:`read` does both,
    waiting, for a source read in a thread of its own. Subclasses give :meth:`url` and :meth:`parse`."""

    name = ""
    split = True
    """Reads in halves (begin/poll/cancel): it may share the sampling thread of the ``inline`` sources."""
    missing_url = "URL unknown until the server is found"
    """The gap reason while :meth:`url` is None (names the flag that gives it)."""

    def __init__(self, target: ServerTarget, *, timeout_s: float = 1.0, http: HttpGetter | None = None) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.http = http or HttpGetter()
        self._pending: PendingGet | None = None

    def url(self) -> str | None:
        """The page to GET (None while unknown)."""
        raise NotImplementedError

    def parse(self, url: str, body: bytes) -> Reading:
        """The reading of one page (SourceUnavailable for a gap)."""
        raise NotImplementedError

    def open(self) -> SourceInfo:
        """Always available; the endpoint may come later (gaps until then)."""
        return SourceInfo(details={"url": self.url()})

    def close(self) -> None:
        """Abandon a GET in flight, close the kept-alive connection."""
        self.cancel()
        self.http.close()

    def read(self) -> Reading:
        """One GET, waiting for the answer (up to ``timeout_s``), and its parse."""
        url = self._url()
        return self.parse(url, self.http.get(url, self.timeout_s))

    def begin(self) -> None:
        """Send the GET of one read; SourceUnavailable when it cannot even be sent (the read is a gap)."""
        self.cancel()
        self._pending = self.http.start(self._url())

    def poll(self) -> Reading | None:
        """The reading once the answer to :meth:`begin`'s GET is complete, None while it is not (never blocks)."""
        pending = self._pending
        if pending is None:
            raise SourceUnavailable("no GET in flight")
        try:
            body = pending.poll()
        except SourceUnavailable:
            self._pending = None
            raise
        if body is None:
            return None
        self._pending = None
        return self.parse(pending.url, body)

    def wait(self, timeout_s: float) -> None:
        """Block up to ``timeout_s`` for more of the answer to :meth:`begin`'s GET."""
        if self._pending is not None:
            self._pending.wait(timeout_s)

    def cancel(self) -> None:
        """Abandon the GET in flight, if any (a timeout)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _url(self) -> str:
        url = self.url()
        if url is None:
            raise SourceUnavailable(self.missing_url)
        return url
