"""Lean streaming clients for decoupled models: gRPC ``ModelStreamInfer`` and HTTP ``generate_stream`` (SSE).

One request per call, its responses read as they arrive, the call cancelled by the client after K responses or
T ms when the request's :class:`CancelPlan` says so:

- :class:`GrpcStreamConnection` opens one HTTP/2 stream per request on the lean gRPC connection of
  :mod:`rmt.load.grpcwire`: HEADERS + the ``ModelInferRequest`` (with ``triton_enable_empty_final_response``) +
  END_STREAM in one write, then one ``ModelStreamInferResponse`` per gRPC message; the response whose
  ``triton_final_response`` parameter is true ends the request. Cancelling sends RST_STREAM (CANCEL), which Triton
  turns into ``request.is_cancelled()`` in the model; the connection stays open for the next request.
- :class:`SseConnection` posts a JSON body to ``v2/models/M/generate_stream`` on a keep-alive HTTP/1.1 connection and
  reads the chunked ``text/event-stream`` reply (one ``data: {...}`` event per response); the terminating chunk is
  the final flag. Cancelling closes the connection (Triton cancels the request; the next request reconnects).

Both return a :class:`StreamResult`: outcome, responses, monotonic time of the first response, the gaps between
responses (µs), whether the final flag was seen, bytes received and the last data response (for its trace).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import hpack
import numpy as np
from tritonclient.grpc import service_pb2

from rmt.core.scenario import StreamSpec
from rmt.load.grpcwire import (
    _DATA,
    _END_HEADERS,
    _END_STREAM,
    _HEAD,
    _HEADERS,
    _MAX_STREAM_ID,
    _PADDED,
    _PRIORITY,
    _RST_STREAM,
    _WINDOW_UPDATE,
    CANCELLED,
    INTERNAL,
    STATUS_NAMES,
    UNAVAILABLE,
    CallFailed,
    GrpcConnection,
    frame,
)
from rmt.load.payloads import TRACE_OUTPUT, TRACE_WIDTH
from rmt.load.transport import CLIENT, OK, SERVER, HttpConnection, classify_server_error

#: Triton's streaming inference method.
MODEL_STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"
_RECV = 262144
_FINAL_PARAM = "triton_final_response"


@dataclass(frozen=True)
class CancelPlan:
    """When the client cancels one request: after ``after_responses`` responses or ``after_ms`` ms (0: never)."""

    after_responses: int = 0
    after_ms: float = 0.0

    @property
    def active(self) -> bool:
        """Whether this request is cancelled at all."""
        return self.after_responses > 0 or self.after_ms > 0


NO_CANCEL = CancelPlan()


def draw_cancel(spec: StreamSpec | None, rng: random.Random) -> CancelPlan:
    """This request's cancel plan: the pattern's plan for a ``cancel_share`` of requests, else none."""
    if spec is None or spec.cancel_share <= 0 or rng.random() >= spec.cancel_share:
        return NO_CANCEL
    return CancelPlan(spec.cancel_after_responses, spec.cancel_after_ms)


@dataclass
class StreamResult:
    """What one streaming request brought."""

    outcome: int = OK
    """A :mod:`rmt.load.transport` outcome code (OK for completed and client-cancelled requests)."""
    cancelled: bool = False
    """The client cancelled it on purpose (its :class:`CancelPlan`)."""
    responses: int = 0
    """Data responses received (the empty final response of gRPC not counted)."""
    first_ns: int = 0
    """``time.perf_counter_ns()`` at the first data response (0: none)."""
    last_ns: int = 0
    gaps_us: list[float] = field(default_factory=list)
    """µs between consecutive data responses."""
    final: bool = False
    """The server's final flag arrived (gRPC ``triton_final_response``, HTTP's terminating chunk)."""
    length: int = 0
    """Bytes of the responses received."""
    error: str = ""
    last: Any = None
    """The last data response (gRPC: a ``ModelInferResponse``; HTTP: the event's JSON bytes)."""

    def response(self, now_ns: int, size: int) -> None:
        """Count one data response arriving at ``now_ns``."""
        if self.responses:
            self.gaps_us.append((now_ns - self.last_ns) / 1000)
        else:
            self.first_ns = now_ns
        self.last_ns = now_ns
        self.responses += 1
        self.length += size

    def fail(self, outcome: int, error: str) -> StreamResult:
        """Mark the request failed; returns itself."""
        self.outcome, self.error = outcome, error
        return self

    def should_cancel(self, plan: CancelPlan, sent_ns: int, now_ns: int) -> bool:
        """Whether ``plan`` says to cancel now."""
        if plan.after_responses and self.responses >= plan.after_responses:
            return True
        return bool(plan.after_ms) and now_ns - sent_ns >= plan.after_ms * 1e6


def stream_trace(result: StreamResult) -> np.ndarray | None:
    """The ``TRACE`` rows of a result's last data response (either protocol), or ``None``."""
    last = result.last
    if last is None:
        return None
    if isinstance(last, bytes):
        values = json.loads(last).get(TRACE_OUTPUT)
        return None if values is None else np.asarray(values, dtype=np.int64).reshape(-1, TRACE_WIDTH)
    for i, out in enumerate(last.outputs):
        if out.name == TRACE_OUTPUT and i < len(last.raw_output_contents):
            return np.frombuffer(last.raw_output_contents[i], dtype=np.int64).reshape(-1, TRACE_WIDTH)
    return None


class GrpcStreamConnection(GrpcConnection):
    """The lean gRPC connection with one ``ModelStreamInfer`` stream per request (see the module docstring)."""

    def stream(self, parts: Sequence[bytes], plan: CancelPlan = NO_CANCEL) -> StreamResult:
        """Send one request (message = ``parts`` joined) and read its responses; never raises OSError."""
        result = StreamResult()
        if self._idle is not None:
            self._idle.stop()
        try:
            self._stream(parts, plan, result)
            self._idle.start(self._on_idle)
        except TimeoutError as exc:
            self.close()
            return result.fail(CLIENT, f"gRPC DEADLINE_EXCEEDED: Deadline Exceeded ({exc})")
        except CallFailed as exc:
            self.close()
            return result.fail(CLIENT, f"gRPC {STATUS_NAMES[exc.status]}: {exc}")
        except (OSError, ValueError, hpack.HPACKError) as exc:
            self.close()
            return result.fail(CLIENT, f"gRPC UNAVAILABLE: {type(exc).__name__}: {exc}")
        return result

    def _stream(self, parts: Sequence[bytes], plan: CancelPlan, result: StreamResult) -> None:
        if self._sock is None or self._next_stream > _MAX_STREAM_ID:
            self.close()
            self._open()
        sid = self._next_stream
        self._next_stream = sid + 2
        self._stream_window = self._peer_initial_window
        block = self.block(MODEL_STREAM_INFER)
        size = 5 + sum(map(len, parts))
        nb = len(block)
        head = _HEAD.pack(nb >> 8, nb & 0xFF, _HEADERS, _END_HEADERS, sid) + block
        prefix = b"\x00" + (size - 5).to_bytes(4, "big")
        sent = time.perf_counter_ns()
        deadline = time.monotonic() + self.timeout_s
        if size <= self._peer_max_frame and size <= self._send_window and size <= self._stream_window:
            self._send_window -= size
            self._write(b"".join((head, _HEAD.pack(size >> 8, size & 0xFF, _DATA, _END_STREAM, sid), prefix, *parts)))
        else:
            self._write(head)
            if self._send_flow_controlled(sid, b"".join((prefix, *parts)), deadline) is not None:
                result.fail(SERVER, "gRPC: the server answered before taking the whole request")
                return
        self._read_stream(sid, sent, deadline, plan, result)

    def _read_stream(self, sid: int, sent: int, deadline: float, plan: CancelPlan, result: StreamResult) -> None:
        sock = self._sock
        buf = self._buf
        pos = 0
        pending = b""  # gRPC message bytes of this stream not yet complete
        finished = False  # the final response came: only the trailers are left
        cancel_at = sent + int(plan.after_ms * 1e6) if plan.after_ms else 0
        while True:
            if len(buf) - pos < 9 or len(buf) - pos < 9 + ((buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no final response within {self.timeout_s:g} s")
                if cancel_at and not finished:
                    left = (cancel_at - time.perf_counter_ns()) / 1e9
                    if left <= 0:
                        self._buf = buf[pos:]
                        self._cancel(sid, result)
                        return
                    sock.settimeout(left)
                try:
                    chunk = sock.recv(_RECV)
                except TimeoutError:
                    continue
                finally:
                    if cancel_at:
                        sock.settimeout(self.timeout_s)
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
                    pending += payload
                    while len(pending) >= 5 and len(pending) >= 5 + int.from_bytes(pending[1:5], "big"):
                        n = 5 + int.from_bytes(pending[1:5], "big")
                        finished = self._message(pending[5:n], result) or finished
                        pending = pending[n:]
                        if not finished and plan.active and result.should_cancel(plan, sent, time.perf_counter_ns()):
                            self._buf = buf[pos:]
                            self._cancel(sid, result)
                            return
                elif kind == _HEADERS:
                    if flags & _PADDED:
                        payload = payload[1:len(payload) - payload[0]]
                    if flags & _PRIORITY:
                        payload = payload[5:]
                    if flags & _END_STREAM:  # the trailers: the call's status
                        self._buf = buf[pos:]
                        fields = self._decode(payload)
                        if finished:  # the final response (or the error) already said how the request ended
                            return
                        status = int(fields.get("grpc-status", "2"))
                        message = fields.get("grpc-message", "the stream ended without a final response")
                        result.fail(classify_server_error(message) if status else CLIENT,
                                    f"gRPC {STATUS_NAMES[status] if status < len(STATUS_NAMES) else status}: "
                                    f"{message}")
                        return
                elif kind == _RST_STREAM:
                    self._buf = buf[pos:]
                    code = int.from_bytes(payload[:4], "big")
                    raise CallFailed(UNAVAILABLE if code == 7 else CANCELLED if code == 8 else INTERNAL,
                                     f"tritonserver reset the stream (HTTP/2 error {code})")
                elif kind == _WINDOW_UPDATE:
                    self._stream_window += int.from_bytes(payload[:4], "big") & _MAX_STREAM_ID
            elif stream == 0:
                self._control(kind, flags, payload, sid)
            elif kind == _DATA:  # a cancelled stream's late responses still use the connection window
                self._count_received(len(payload))

    def _cancel(self, sid: int, result: StreamResult) -> None:
        self._write(frame(_RST_STREAM, 0, sid, (8).to_bytes(4, "big")))  # CANCEL: Triton cancels the request
        result.cancelled = True

    @staticmethod
    def _message(message: bytes, result: StreamResult) -> bool:
        """Account one ``ModelStreamInferResponse``; True when it ends the request (final flag or error)."""
        now = time.perf_counter_ns()
        reply = service_pb2.ModelStreamInferResponse.FromString(message)
        if reply.error_message:
            result.fail(classify_server_error(reply.error_message), f"gRPC stream: {reply.error_message}")
            return True
        response = reply.infer_response
        final = _FINAL_PARAM in response.parameters and response.parameters[_FINAL_PARAM].bool_param
        if response.outputs or not final:
            result.response(now, len(message))
            result.last = response
        if final:
            result.final = True
        return final


def sse_head(host: str, model: str, length: int) -> bytes:
    """The request line and headers of a ``generate_stream`` POST with a ``length``-byte JSON body."""
    return (f"POST /v2/models/{model}/generate_stream HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {length}\r\n\r\n").encode()


class SseConnection(HttpConnection):
    """A keep-alive HTTP/1.1 connection reading ``generate_stream`` replies (see the module docstring)."""

    def stream(self, parts: Sequence[bytes], plan: CancelPlan = NO_CANCEL) -> StreamResult:
        """Send one request (the bytes ``parts`` joined: head and JSON body) and read its events."""
        result = StreamResult()
        sent = time.perf_counter_ns()
        try:
            if self._sock is None:
                self._sock = self._open_socket()
            self._write(b"".join(parts))
            self._read_events(sent, plan, result)
        except (OSError, ValueError) as exc:
            self.close()
            return result.fail(CLIENT, f"{type(exc).__name__}: {exc}")
        if result.cancelled or result.outcome != OK:
            self.close()  # how HTTP cancels (Triton cancels the request); an abandoned reply is not read either
        return result

    def _recv(self, sent: int, plan: CancelPlan, result: StreamResult) -> bytes | None:
        """The next bytes, or ``None`` when the plan's time to cancel came first."""
        sock = self._sock
        if plan.after_ms:
            left = (sent + plan.after_ms * 1e6 - time.perf_counter_ns()) / 1e9
            if left <= 0:
                result.cancelled = True
                return None
            sock.settimeout(min(left, self.timeout_s))
            try:
                chunk = sock.recv(_RECV)
            except TimeoutError:
                if time.perf_counter_ns() - sent < plan.after_ms * 1e6:
                    raise
                result.cancelled = True
                return None
            finally:
                sock.settimeout(self.timeout_s)
        else:
            chunk = sock.recv(_RECV)
        if not chunk:
            raise ConnectionError("tritonserver closed the connection mid-stream")
        return chunk

    def _read_events(self, sent: int, plan: CancelPlan, result: StreamResult) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            chunk = self._recv(sent, plan, result)
            if chunk is None:
                return
            buf += chunk
            end = buf.find(b"\r\n\r\n")
        head = buf[:end]
        status = int(head[9:12])
        buf = buf[end + 4:]
        if status != 200 or b"chunked" not in head.lower():
            self._buf = buf
            self.close()  # the body is left unread: a fresh connection for the next request
            try:
                message = str(json.loads(buf).get("error", buf[:200])) if buf else f"HTTP {status}"
            except ValueError:
                message = buf[:200].decode("utf-8", "replace")
            result.fail(classify_server_error(message), f"HTTP {status}: {message}")
            return
        events = b""
        while True:
            line_end = buf.find(b"\r\n")
            if line_end >= 0:
                size = int(buf[:line_end].split(b";", 1)[0], 16)
                if size == 0 and len(buf) >= line_end + 4:
                    self._buf = buf[line_end + 4:]
                    result.final = True
                    return
                if size and len(buf) >= line_end + 2 + size + 2:
                    events += buf[line_end + 2:line_end + 2 + size]
                    buf = buf[line_end + 4 + size:]
                    if self._events(events, result, plan, sent):
                        return
                    events = b"" if events.endswith(b"\n\n") else events[events.rfind(b"\n\n") + 2:]
                    continue
            chunk = self._recv(sent, plan, result)
            if chunk is None:
                return
            buf += chunk

    @staticmethod
    def _events(events: bytes, result: StreamResult, plan: CancelPlan, sent: int) -> bool:
        """Account the complete events in ``events``; True when the request ends here (error or cancel)."""
        now = time.perf_counter_ns()
        for event in events.split(b"\n\n")[:-1]:
            data = event[6:] if event.startswith(b"data: ") else event
            if data.startswith(b'{"error"'):
                message = str(json.loads(data).get("error", ""))
                result.fail(classify_server_error(message) if message else SERVER, f"HTTP stream: {message}")
                return True
            result.response(now, len(event))
            result.last = data
            if plan.active and result.should_cancel(plan, sent, now):
                result.cancelled = True
                return True
        return False


__all__ = ["MODEL_STREAM_INFER", "NO_CANCEL", "CancelPlan", "GrpcStreamConnection", "SseConnection", "StreamResult",
           "draw_cancel", "sse_head", "stream_trace"]
