"""Lean Triton clients for the hot path: pre-encoded bytes in, an outcome code and the reply out.

- :class:`HttpConnection`: one keep-alive HTTP/1.1 connection on a (gevent) socket speaking Triton's binary tensor
  extension. The request line, headers and JSON header are encoded once per body; per request only the id is
  inserted. No ``Accept-Encoding`` is sent, so Triton never compresses replies.
- gRPC's lean connection is :class:`rmt.load.grpcwire.GrpcConnection` (raw ``ModelInfer`` bytes over HTTP/2 on the
  same kind of socket); :func:`grpc_trace` parses its replies only when a trace is wanted. grpcio itself only fetches
  model configs (:func:`init_grpc_gevent` first).

Outcomes (:data:`OK` … :data:`CLIENT`) classify failures the way Triton reports them: a queue timeout
("Request timeout expired"), a full queue ("Exceeds maximum queue size"), any other server error, or no reply at all.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import numpy as np

from rmt.load.payloads import TRACE_OUTPUT, TRACE_WIDTH, HttpBody

OK, TIMEOUT, REJECTED, SERVER, CLIENT = range(5)
#: Outcome code → the reason word used in records and Locust error names.
OUTCOMES = ("ok", "timeout", "rejected", "server_error", "client_error")
_TIMEOUT_TEXT = "Request timeout expired"
_REJECT_TEXT = "Exceeds maximum queue size"
_RECV = 262144


def classify_server_error(message: str) -> int:
    """The outcome of a request Triton answered with an error ``message``."""
    if _TIMEOUT_TEXT in message:
        return TIMEOUT
    if _REJECT_TEXT in message:
        return REJECTED
    return SERVER


class HttpWire:
    """The bytes of one pre-encoded HTTP request: ``head + request id + tail``."""

    __slots__ = ("batch_size", "head", "tail")

    def __init__(self, host: str, model: str, body: HttpBody, id_width: int) -> None:
        json_len = len(body.json_head) + id_width + len(body.json_tail)
        total = json_len + len(body.binary)
        self.head = (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}\r\n"
                     "Content-Type: application/octet-stream\r\n"
                     f"Inference-Header-Content-Length: {json_len}\r\nContent-Length: {total}\r\n\r\n"
                     ).encode() + body.json_head
        self.tail = body.json_tail + body.binary
        self.batch_size = body.batch_size


class SocketConnection:
    """A TCP connection to Triton (a gevent socket under Locust), opened on demand; subclasses speak the protocol."""

    def __init__(self, host: str, port: int, timeout_s: float,
                 connect: Callable[..., Any] = socket.create_connection) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        """The socket's timeout (s)."""
        self._connect = connect
        self._sock: Any = None
        self._buf = b""

    def close(self) -> None:
        """Close the socket (the next request reconnects)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf = b""

    def _open_socket(self) -> Any:
        """A new connected socket (``TCP_NODELAY``); the read buffer starts empty."""
        sock = self._connect((self.host, self.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        return sock

    def _write(self, data: bytes) -> None:
        """Send ``data``: one syscall for everything but very large writes."""
        sent = self._sock.send(data)
        if sent < len(data):
            self._sock.sendall(memoryview(data)[sent:])


class HttpConnection(SocketConnection):
    """A keep-alive HTTP/1.1 connection to Triton; reconnects after a failure or ``Connection: close``."""

    def send(self, wire: HttpWire, request_id: bytes) -> None:
        """Send one request (connecting first when needed); raises OSError when the socket fails."""
        if self._sock is None:
            self._sock = self._open_socket()
        self._write(b"".join((wire.head, request_id, wire.tail)))

    def receive(self) -> tuple[int, bytes, bytes]:
        """The reply: ``(HTTP status, body, header block)``; raises OSError."""
        sock = self._sock
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            chunk = sock.recv(_RECV)
            if not chunk:
                raise ConnectionError("tritonserver closed the connection")
            buf += chunk
            end = buf.find(b"\r\n\r\n")
        head = buf[:end]
        status = int(head[9:12])
        length = _header_int(head, b"\r\nContent-Length: ")
        if length < 0:
            if b"chunked" in head.lower():
                raise ConnectionError("chunked replies are not supported")
            length = 0
        start = end + 4
        need = start + length
        while len(buf) < need:
            chunk = sock.recv(max(_RECV, need - len(buf)))
            if not chunk:
                raise ConnectionError("tritonserver closed the connection mid-reply")
            buf += chunk
        body = buf[start:need]
        self._buf = buf[need:]
        if b"Connection: close" in head or b"connection: close" in head:
            self.close()
        return status, body, head

    def infer(self, wire: HttpWire, request_id: bytes) -> tuple[int, bytes, bytes, str]:
        """Send and receive: ``(outcome, body, header block, error message)``; never raises OSError."""
        try:
            self.send(wire, request_id)
            status, body, head = self.receive()
        except (OSError, ValueError) as exc:
            self.close()
            return CLIENT, b"", b"", f"{type(exc).__name__}: {exc}"
        if status == 200:
            return OK, body, head, ""
        try:
            message = str(json.loads(body).get("error", body[:200]))
        except ValueError:
            message = body[:200].decode("utf-8", "replace")
        return classify_server_error(message), body, head, f"HTTP {status}: {message}"


def _header_int(head: bytes, name: bytes) -> int:
    i = head.find(name)
    if i < 0:
        lower = head.lower().find(name.lower())
        if lower < 0:
            return -1
        i = lower
    j = head.find(b"\r\n", i + len(name))
    return int(head[i + len(name): j if j >= 0 else len(head)])


def json_header_length(head: bytes) -> int:
    """``Inference-Header-Content-Length`` of a reply's header block (-1: a pure JSON reply)."""
    return _header_int(head, b"\r\nInference-Header-Content-Length: ")


def http_trace(body: bytes, header_len: int) -> np.ndarray | None:
    """The ``TRACE`` rows (N×7 int64) of a binary HTTP reply, or ``None`` when absent."""
    if header_len <= 0:
        return None
    header = json.loads(body[:header_len])
    offset = header_len
    for out in header.get("outputs", []):
        size = int(out.get("parameters", {}).get("binary_data_size", 0))
        if out.get("name") == TRACE_OUTPUT:
            rows = np.frombuffer(body, dtype=np.int64, count=size // 8, offset=offset)
            return rows.reshape(-1, TRACE_WIDTH)
        offset += size
    return None


_GEVENT_GRPC = False


def init_grpc_gevent() -> None:
    """Make gRPC cooperate with gevent (``grpc.experimental.gevent.init_gevent``); idempotent, before any channel."""
    global _GEVENT_GRPC
    if not _GEVENT_GRPC:
        from grpc.experimental import gevent as grpc_gevent

        grpc_gevent.init_gevent()
        _GEVENT_GRPC = True


def grpc_trace(reply: bytes) -> np.ndarray | None:
    """The ``TRACE`` rows (N×7 int64) of a serialized ``ModelInferResponse``, or ``None``."""
    from tritonclient.grpc import service_pb2

    response = service_pb2.ModelInferResponse.FromString(reply)
    for i, out in enumerate(response.outputs):
        if out.name == TRACE_OUTPUT and i < len(response.raw_output_contents):
            return np.frombuffer(response.raw_output_contents[i], dtype=np.int64).reshape(-1, TRACE_WIDTH)
    return None
