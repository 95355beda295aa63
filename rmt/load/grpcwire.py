"""A lean gRPC client: unary calls over one HTTP/2 connection on a plain (under Locust: gevent) socket.

grpcio under gevent costs several times more client CPU per call (every completion crosses from grpc's poller
threads to the gevent hub; figures: docs/benchmarks.md, rmt.load); this client speaks the few parts of HTTP/2 a
unary gRPC call needs, in Python, on the socket the rest of the process already cooperates with:

- the request's HEADERS block is HPACK-encoded once per (authority, method, timeout) — literals only, so it never
  depends on a dynamic table — and reused: per call only the stream id in the frame headers changes, and HEADERS +
  DATA (5-byte gRPC prefix + the pre-serialized message) leave in one ``sendall``;
- the client's SETTINGS set ``HEADER_TABLE_SIZE`` 0, so the server's response header blocks are self-contained and a
  block seen before is decoded from a small cache (the ``hpack`` package decodes the new ones);
- stream windows are opened to 2**31-1 by SETTINGS and the connection window by WINDOW_UPDATE (topped up again as
  DATA arrives), so large replies never stall; requests larger than the server's windows wait for its WINDOW_UPDATEs
  and are split at its ``MAX_FRAME_SIZE``;
- SETTINGS are acknowledged, PINGs answered; RST_STREAM, GOAWAY, a closed socket or a missed deadline fail the call
  and close the connection, which the next call opens again (a restarted server is picked up that way).

One call at a time per connection (one connection per Locust user), as grpcio's blocking stubs do per call.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

import gevent
import hpack

from rmt.load.transport import CLIENT, OK, SERVER, SocketConnection, classify_server_error

#: gRPC status codes by number (``grpc.StatusCode`` names).
STATUS_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
CANCELLED, UNKNOWN, DEADLINE_EXCEEDED, INTERNAL, UNAVAILABLE = 1, 2, 4, 13, 14
#: Statuses that say the call never got an answer from Triton itself (counted as client-side failures).
_TRANSPORT_STATUSES = (CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE)
#: Triton's inference method.
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
_END_STREAM = _ACK = 0x1
_END_HEADERS, _PADDED, _PRIORITY = 0x4, 0x8, 0x20
_HEADER_TABLE_SIZE, _ENABLE_PUSH, _INITIAL_WINDOW_SIZE, _MAX_FRAME_SIZE = 1, 2, 4, 5
_MAX_WINDOW = 2 ** 31 - 1
_MAX_STREAM_ID = 2 ** 31 - 1
_HEAD = struct.Struct(">HBBBL")  # 24-bit length as 16 + 8 bits, type, flags, stream id
_SETTING = struct.Struct(">HL")
_RECV = 262144
_CACHED_BLOCKS = 64
#: How much longer than a call's deadline the client waits for the server's answer.
DEADLINE_GRACE_S = 1.0
#: The client's SETTINGS: no dynamic HPACK table on replies, no push, stream windows as large as HTTP/2 allows.
_CLIENT_SETTINGS = b"".join(_SETTING.pack(k, v) for k, v in (
    (_HEADER_TABLE_SIZE, 0), (_ENABLE_PUSH, 0), (_INITIAL_WINDOW_SIZE, _MAX_WINDOW)))
_HTTP_STATUS = {400: INTERNAL, 401: 16, 403: 7, 404: 12, 429: UNAVAILABLE, 502: UNAVAILABLE, 503: UNAVAILABLE,
                504: UNAVAILABLE}


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame."""
    n = len(payload)
    return _HEAD.pack(n >> 8, n & 0xFF, kind, flags, stream) + payload


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer with a ``prefix_bits`` prefix whose high bits are ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _literal(name: int | bytes, value: bytes) -> bytes:
    """A header field "literal without indexing", strings not Huffman-coded (static name index or a new name)."""
    head = _hpack_int(name, 4, 0) if isinstance(name, int) else b"\x00" + _hpack_int(len(name), 7, 0) + name
    return head + _hpack_int(len(value), 7, 0) + value


def grpc_timeout(seconds: float) -> bytes:
    """The ``grpc-timeout`` value for ``seconds`` (at most 8 digits, finest unit that fits)."""
    for unit, scale in ((b"u", 1e6), (b"m", 1e3), (b"S", 1.0)):
        value = max(1, round(seconds * scale))
        if value < 10 ** 8:
            return b"%d" % value + unit
    return b"99999999S"


def request_block(authority: str, method: str, timeout_s: float) -> bytes:
    """The HPACK block of a unary call's request headers (literals only: valid on any connection, any time)."""
    return b"".join((
        b"\x83\x86",  # :method POST, :scheme http (static table 3 and 6)
        _literal(4, method.encode()),  # :path
        _literal(1, authority.encode()),  # :authority
        _literal(31, b"application/grpc"),  # content-type
        _literal(b"te", b"trailers"),
        _literal(b"grpc-timeout", grpc_timeout(timeout_s)),
        _literal(b"user-agent", b"rmt-grpcwire"),
    ))


class CallFailed(ConnectionError):
    """The call got no gRPC status from the server (stream reset, GOAWAY, protocol violation)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class GrpcConnection(SocketConnection):
    """One HTTP/2 connection to a gRPC server for unary calls with pre-serialized messages; reconnects on demand.

    ``deadline_s`` is every call's deadline, sent as ``grpc-timeout``: the server ends a late call with
    DEADLINE_EXCEEDED. The client itself gives up :data:`DEADLINE_GRACE_S` later (the socket's timeout), so a
    server's own verdict arrives first.
    """

    def __init__(self, host: str, port: int, deadline_s: float,
                 connect: Callable[..., Any] = socket.create_connection) -> None:
        super().__init__(host, port, deadline_s + DEADLINE_GRACE_S, connect)
        self.deadline_s = deadline_s
        self.authority = f"{host}:{port}"
        self._blocks: dict[str, bytes] = {}
        self._decoded: dict[bytes, dict[str, str]] = {}
        self._next_stream = 1
        self._send_window = 65535  # connection-level, toward the server
        self._stream_window = 65535  # the current stream's, toward the server
        self._peer_initial_window = 65535
        self._peer_max_frame = 16384
        self._received = 0  # DATA bytes since the last connection WINDOW_UPDATE we sent
        self._decoder: hpack.Decoder | None = None
        self._partial: tuple[dict[str, str] | None, list[bytes]] | None = None
        """What a stream's reply had brought while its request still waited for a send window."""
        self._idle: Any = None
        """Between calls: a gevent watcher that reads what the server sends (see :meth:`_on_idle`)."""

    def close(self) -> None:
        """Close the socket (the next call reconnects)."""
        if self._idle is not None:
            self._idle.stop()
            self._idle.close()
            self._idle = None
        super().close()

    def _open(self) -> None:
        self._sock = self._open_socket()
        self._next_stream = 1
        self._send_window = self._peer_initial_window = 65535
        self._peer_max_frame = 16384
        self._received = 0
        self._partial = None
        decoder = self._decoder = hpack.Decoder()
        decoder.header_table_size = 0
        decoder.max_allowed_table_size = 0
        self._decoded.clear()
        self._idle = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        self._write(_PREFACE + frame(_SETTINGS, 0, 0, _CLIENT_SETTINGS)
                    + frame(_WINDOW_UPDATE, 0, 0, (_MAX_WINDOW - 65535).to_bytes(4, "big")))

    # -- calls -------------------------------------------------------------------------------------------------------
    def block(self, method: str) -> bytes:
        """The (cached) request header block of ``method`` on this connection's authority and timeout."""
        found = self._blocks.get(method)
        if found is None:
            found = self._blocks[method] = request_block(self.authority, method, self.deadline_s)
        return found

    def call(self, block: bytes, parts: Sequence[bytes]) -> tuple[int, str, bytes]:
        """Send one unary call (message = ``parts`` joined): ``(grpc status, message, reply message bytes)``.

        Raises OSError (``CallFailed`` included) when the call got no status; the connection is then closed.
        """
        if self._idle is not None:
            self._idle.stop()
        try:
            done = self._call(block, parts)
            self._idle.start(self._on_idle)
            return done
        except (OSError, ValueError, hpack.HPACKError) as exc:
            self.close()
            if isinstance(exc, OSError):
                raise
            raise CallFailed(INTERNAL, f"protocol error: {type(exc).__name__}: {exc}") from exc

    def _call(self, block: bytes, parts: Sequence[bytes]) -> tuple[int, str, bytes]:
        if self._sock is None or self._next_stream > _MAX_STREAM_ID:
            self.close()
            self._open()
        sid = self._next_stream
        self._next_stream = sid + 2
        self._stream_window = self._peer_initial_window
        size = 5 + sum(map(len, parts))
        nb = len(block)
        head = _HEAD.pack(nb >> 8, nb & 0xFF, _HEADERS, _END_HEADERS, sid) + block
        prefix = b"\x00" + (size - 5).to_bytes(4, "big")
        deadline = time.monotonic() + self.timeout_s
        if size <= self._peer_max_frame and size <= self._send_window and size <= self._stream_window:
            self._send_window -= size
            self._write(b"".join((head, _HEAD.pack(size >> 8, size & 0xFF, _DATA, _END_STREAM, sid), prefix, *parts)))
        else:
            self._write(head)
            done = self._send_flow_controlled(sid, b"".join((prefix, *parts)), deadline)
            if done is not None:  # the server answered (an error) before taking the whole message
                return done
        return self._read(sid, deadline)

    def _send_flow_controlled(self, sid: int, data: bytes, deadline: float) -> tuple[int, str, bytes] | None:
        view = memoryview(data)
        while view:
            n = min(len(view), self._peer_max_frame, self._send_window, self._stream_window)
            if n <= 0:
                done = self._read(sid, deadline, until_window=True)
                if done is not None:
                    return done
                continue
            last = n == len(view)
            self._write(frame(_DATA, _END_STREAM if last else 0, sid, bytes(view[:n])))
            self._send_window -= n
            self._stream_window -= n
            view = view[n:]
        return None

    def _read(self, sid: int, deadline: float, until_window: bool = False) -> Any:
        """Read frames until stream ``sid`` ends (``(status, message, reply)``) or, with ``until_window``, until a
        send window opens (``None``) or the stream ends early."""
        sock = self._sock
        buf = self._buf
        pos = 0
        headers, data = self._partial or (None, [])
        self._partial = None
        fragments = b""
        ended = False
        while True:
            if len(buf) - pos < 9 or len(buf) - pos < 9 + ((buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no reply within {self.timeout_s:g} s")
                chunk = sock.recv(_RECV)
                if not chunk:
                    raise CallFailed(UNAVAILABLE, "tritonserver closed the connection")
                buf = buf[pos:] + chunk if pos < len(buf) else chunk
                pos = 0
                continue
            hi, lo, kind, flags, stream = _HEAD.unpack_from(buf, pos)
            end = pos + 9 + (hi << 8 | lo)
            payload = buf[pos + 9:end]
            pos = end
            stream &= _MAX_STREAM_ID
            if stream == sid:
                if kind == _DATA:
                    self._count_received(len(payload))
                    if flags & _PADDED:
                        payload = payload[1:len(payload) - payload[0]]
                    data.append(payload)
                    if flags & _END_STREAM:
                        self._buf = buf[pos:]
                        raise CallFailed(INTERNAL, "the server ended the stream without trailers")
                elif kind in (_HEADERS, _CONTINUATION):
                    if kind == _HEADERS:
                        if flags & _PADDED:
                            payload = payload[1:len(payload) - payload[0]]
                        if flags & _PRIORITY:
                            payload = payload[5:]
                        ended = bool(flags & _END_STREAM)
                    fragments += payload
                    if not flags & _END_HEADERS:
                        continue
                    fields = self._decode(fragments)
                    fragments = b""
                    if headers is None:
                        headers = fields
                    if not ended:
                        continue
                    self._buf = buf[pos:]
                    return self._finish(headers, fields, data)
                elif kind == _RST_STREAM:
                    self._buf = buf[pos:]
                    code = int.from_bytes(payload[:4], "big")
                    raise CallFailed(UNAVAILABLE if code == 7 else CANCELLED if code == 8 else INTERNAL,
                                     f"tritonserver reset the stream (HTTP/2 error {code})")
                elif kind == _WINDOW_UPDATE:
                    self._stream_window += int.from_bytes(payload[:4], "big") & _MAX_WINDOW
                    if until_window and self._stream_window > 0 and self._send_window > 0:
                        self._buf = buf[pos:]
                        self._partial = headers, data
                        return None
            elif stream == 0:
                if self._control(kind, flags, payload, sid) and until_window and self._send_window > 0 \
                        and self._stream_window > 0:
                    self._buf = buf[pos:]
                    self._partial = headers, data
                    return None
            elif kind == _DATA:  # a stream we no longer wait for still uses the connection window
                self._count_received(len(payload))

    def _control(self, kind: int, flags: int, payload: bytes, sid: int) -> bool:
        """Handle a connection-level frame; True when it may have opened a send window."""
        if kind == _SETTINGS:
            if flags & _ACK:
                return False
            for i in range(0, len(payload) - 5, 6):
                key, value = _SETTING.unpack_from(payload, i)
                if key == _INITIAL_WINDOW_SIZE:
                    self._stream_window += value - self._peer_initial_window
                    self._peer_initial_window = value
                elif key == _MAX_FRAME_SIZE:
                    self._peer_max_frame = value
            self._write(frame(_SETTINGS, _ACK, 0))
            return True
        if kind == _PING:
            if not flags & _ACK:
                self._write(frame(_PING, _ACK, 0, payload))
            return False
        if kind == _WINDOW_UPDATE:
            self._send_window += int.from_bytes(payload[:4], "big") & _MAX_WINDOW
            return True
        if kind == _GOAWAY:
            last = int.from_bytes(payload[:4], "big") & _MAX_STREAM_ID
            code = int.from_bytes(payload[4:8], "big")
            self._next_stream = _MAX_STREAM_ID + 1  # no new stream on this connection
            if sid > last:
                text = payload[8:].decode("utf-8", "replace")
                raise CallFailed(UNAVAILABLE, f"tritonserver sent GOAWAY (HTTP/2 error {code}) {text}".rstrip())
        return False

    def _on_idle(self) -> None:
        """The server spoke while no call waits (in the gevent hub): answer SETTINGS and PING, close on GOAWAY or EOF.

        A server shutting down gracefully sends GOAWAY and a PING, and waits up to 20 s for the PING's ACK before it
        lets go of the connection: answered here, an idle user never holds up a server's stop or restart.
        """
        try:
            chunk = self._sock.recv(_RECV)  # readable: returns at once
            if not chunk:
                raise ConnectionError("tritonserver closed the connection")
            buf = self._buf + chunk
            pos = 0
            while len(buf) - pos >= 9:
                hi, lo, kind, flags, stream = _HEAD.unpack_from(buf, pos)
                end = pos + 9 + (hi << 8 | lo)
                if end > len(buf):
                    break
                if stream & _MAX_STREAM_ID == 0:
                    self._control(kind, flags, buf[pos + 9:end], 0)
                elif kind == _DATA:
                    self._count_received(end - pos - 9)
                pos = end
            self._buf = buf[pos:]
            if self._next_stream > _MAX_STREAM_ID:  # GOAWAY: this connection takes no new call
                self.close()
        except (OSError, AssertionError):  # AssertionError: gevent refused to block in its hub (a full send buffer)
            self.close()

    def _count_received(self, n: int) -> None:
        self._received += n
        if self._received >= 1 << 30:
            self._write(frame(_WINDOW_UPDATE, 0, 0, self._received.to_bytes(4, "big")))
            self._received = 0

    def _decode(self, block: bytes) -> dict[str, str]:
        found = self._decoded.get(block)
        if found is None:
            assert self._decoder is not None
            found = {str(k): str(v) for k, v in self._decoder.decode(block)}
            if len(self._decoded) < _CACHED_BLOCKS:  # no dynamic table: the same bytes always mean the same
                self._decoded[block] = found
        return found

    @staticmethod
    def _finish(headers: dict[str, str], trailers: dict[str, str], data: list[bytes]) -> tuple[int, str, bytes]:
        http = headers.get(":status", "200")
        if http != "200":
            return _HTTP_STATUS.get(int(http), UNKNOWN), f"HTTP status {http}", b""
        status = trailers.get("grpc-status")
        if status is None:
            return UNKNOWN, "no grpc-status in the reply", b""
        message = unquote(trailers.get("grpc-message", ""))
        body = data[0] if len(data) == 1 else b"".join(data)
        return int(status), message, body[5:]

    def infer(self, block: bytes, parts: Sequence[bytes]) -> tuple[int, bytes, str]:
        """One call as an inference: ``(outcome, reply bytes, error message)``; never raises OSError."""
        try:
            status, message, reply = self.call(block, parts)
        except TimeoutError as exc:
            return CLIENT, b"", f"gRPC DEADLINE_EXCEEDED: Deadline Exceeded ({exc})"
        except CallFailed as exc:
            return CLIENT, b"", f"gRPC {STATUS_NAMES[exc.status]}: {exc}"
        except OSError as exc:
            return CLIENT, b"", f"gRPC UNAVAILABLE: {type(exc).__name__}: {exc}"
        if status == 0:
            return OK, reply, ""
        outcome = classify_server_error(message)
        if outcome == SERVER and status in _TRANSPORT_STATUSES:
            outcome = CLIENT
        name = STATUS_NAMES[status] if status < len(STATUS_NAMES) else str(status)
        return outcome, b"", f"gRPC {name}: {message}"
