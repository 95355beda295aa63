"""Locust users that send Triton inference traffic: :class:`TritonHttpUser` and :class:`TritonGrpcUser`.

Both are abstract: subclass them in a locustfile (optionally with a ``scenario`` dict) and attach the coordinator
(:class:`rmt.load.plugin.TritonTraffic`). Closed loop: each user picks a stream by the phase's weights, sends, waits
``wait_s``, repeats. Open loop: the process's arrival driver issues requests on schedule and each user is one
connection that takes the next arrival; when every user is busy the arrival waits in the backlog (``delayed_cap``)
or is dropped (``dropped_cap``). Latency is measured from the *intended* send time, service time from the actual
send. Every request fires Locust's ``request`` event named ``model/p<priority>/<pattern>`` (type ``HTTP`` or
``gRPC``, response time = latency in ms) so Locust's own statistics stay meaningful.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, ClassVar

import gevent
import tritonclient.http as httpclient
from locust import User
from locust.exception import StopUser
from tritonclient.utils import InferenceServerException

from rmt.core.errors import ConfigError
from rmt.core.hosts import split_host
from rmt.load.engine import TrafficEngine, engine_for
from rmt.load.grpcwire import MODEL_INFER
from rmt.load.payloads import ID_WIDTH, Pool, encode_grpc, encode_http, grpc_id_field
from rmt.load.pinning import IDLE, FreePicker, active, claim_stream, total_dedicated
from rmt.load.shmio import ShmControl, grpc_control, http_control
from rmt.load.stateful import Prepared, StatefulStream
from rmt.load.streamwire import CancelPlan, GrpcStreamConnection, SseConnection, StreamResult, draw_cancel, sse_head
from rmt.load.streamwire import stream_trace as _stream_trace
from rmt.load.transport import (
    CLIENT,
    OK,
    OUTCOMES,
    HttpConnection,
    HttpWire,
    grpc_trace,
    http_trace,
    init_grpc_gevent,
    json_header_length,
)

_SLICE_NS = 50_000_000
_ID_TAG = grpc_id_field(bytes(ID_WIDTH))[:-ID_WIDTH]  # tag and length of ModelInferRequest.id; the id follows


class TritonRequestError(Exception):
    """A failed inference as Locust's statistics see it: ``<reason>: <message>``."""


def _missing_model(model: str, host: str, exc: InferenceServerException) -> ConfigError:
    text = " ".join(str(exc.message() or exc).split())
    if "unavailable" in text.lower() or "connect" in text.lower():
        return ConfigError(f"cannot reach tritonserver at {host} ({text}): fix --host")
    return ConfigError(f"model {model!r} is not on the server at {host} ({text}): fix the stream's model name")


def fetch_config_http(host: str) -> Callable[[str], Any]:
    """``model → JSON config`` over HTTP (used to derive and check inputs before load)."""
    def fetch(model: str) -> Any:
        client = httpclient.InferenceServerClient(host, connection_timeout=10, network_timeout=30)
        try:
            return client.get_model_config(model)
        except InferenceServerException as exc:
            raise _missing_model(model, host, exc) from None
        except OSError as exc:
            raise ConfigError(f"cannot reach tritonserver at {host} ({exc}): fix --host") from None
        finally:
            client.close()
    return fetch


def fetch_config_grpc(url: str) -> Callable[[str], Any]:
    """``model → JSON config`` over gRPC."""
    def fetch(model: str) -> Any:
        import tritonclient.grpc as grpcclient

        init_grpc_gevent()
        client = grpcclient.InferenceServerClient(url)
        try:
            return client.get_model_config(model, as_json=True, client_timeout=30)["config"]
        except InferenceServerException as exc:
            raise _missing_model(model, url, exc) from None
        finally:
            client.close()
    return fetch


def grpc_host(environment: Any) -> str:
    """``--rmt-grpc-host`` (the server's gRPC address when ``--host`` is its HTTP one), or ''."""
    return str(getattr(environment.parsed_options, "rmt_grpc_host", "") or "") if environment.parsed_options else ""


class _Lane:
    """The per-protocol part of a user: a connection, the wire forms of the bodies, a round-robin cursor."""

    protocol = ""
    request_type = ""

    def __init__(self, pools: list[Pool], engine: TrafficEngine | None = None,
                 make_control: Callable[[], ShmControl] | None = None) -> None:
        self.pools = pools
        self.cursor = [random.randrange(max(1, len(p.batch_sizes))) for p in pools]
        self.stateful: list[StatefulStream | None] = [None] * len(pools)
        """Per stream: the builder of its requests when its pattern is stateful (sequence, shm, cache)."""
        if engine is not None:
            for i, pool in enumerate(pools):
                if pool.resolved.pattern.stateful:
                    built = StatefulStream(pool, engine.note, engine.shm, make_control, random.Random(),
                                           owner=(self.protocol, pool.resolved.stream.name))
                    self.stateful[i] = built
                    engine.stateful.append(built)

    def infer(self, stream: int, request_id: bytes) -> tuple[int, int, int, str, Any]:
        """Send one request of ``stream``: ``(outcome, batch, reply bytes, error, trace source)``."""
        builder = self.stateful[stream]
        if builder is None:
            return self.infer_pooled(stream, request_id)
        try:
            prepared = builder.next()
        except Exception as exc:  # a region could not be created or registered: the request fails, no load stops
            builder.failed_before_send(time.time_ns())
            return CLIENT, 1, 0, f"shared memory: {type(exc).__name__}: {exc}", None
        outcome, batch, length, error, source = self.send_prepared(stream, prepared, request_id)
        builder.done(prepared, outcome == OK, time.time_ns())
        return outcome, batch, length, error, source

    def probe(self, stream: int, request_id: bytes) -> None:
        """Send a due reclaim probe of ``stream``'s abandoned sequences (unbooked: not part of the load)."""
        builder = self.stateful[stream]
        prepared = builder.probe(time.time_ns()) if builder is not None else None
        if builder is not None and prepared is not None:
            outcome, _, _, error, _ = self.send_prepared(stream, prepared, request_id)
            builder.probe_done(prepared, outcome == OK, error, time.time_ns())

    def infer_pooled(self, stream: int, request_id: bytes) -> tuple[int, int, int, str, Any]:
        """Send the next pre-encoded body of ``stream``."""
        raise NotImplementedError

    def send_prepared(self, stream: int, prepared: Prepared, request_id: bytes) -> tuple[int, int, int, str, Any]:
        """Encode and send one request built by a :class:`StatefulStream`."""
        raise NotImplementedError

    def trace(self, source: Any) -> Any:
        """The TRACE rows of a reply (``None`` when absent)."""
        raise NotImplementedError

    def stream_infer(self, stream: int, request_id: bytes, plan: CancelPlan) -> tuple[StreamResult, int]:
        """Send one streaming request of ``stream`` and read its responses: ``(result, batch)``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection and the stateful streams' regions."""
        now = time.time_ns()
        for builder in self.stateful:
            if builder is not None:
                builder.close(now)


class _HttpLane(_Lane):
    protocol, request_type = "http", "HTTP"

    def __init__(self, pools: list[Pool], host: str, port: int, timeout_s: float,
                 engine: TrafficEngine | None = None) -> None:
        super().__init__(pools, engine, lambda: http_control(f"{host}:{port}"))
        self.authority = f"{host}:{port}"
        self.conn = HttpConnection(host, port, timeout_s)
        self.wires = [[HttpWire(self.authority, p.resolved.stream.model, b, ID_WIDTH) for b in p.http] for p in pools]
        self.sse_conn = SseConnection(host, port, timeout_s)
        self.sse = [[(sse_head(f"{host}:{port}", p.resolved.stream.model, len(h) + ID_WIDTH + len(t)) + h, t)
                     for h, t in p.sse] for p in pools]

    def send_prepared(self, stream: int, prepared: Prepared, request_id: bytes) -> tuple[int, int, int, str, Any]:
        """Encode ``prepared`` as a binary-extension body and send it."""
        resolved = self.pools[stream].resolved
        body = encode_http(resolved, prepared.arrays, prepared.extra, prepared.placement)
        outcome, reply, head, error = self.conn.infer(HttpWire(self.authority, resolved.stream.model, body, ID_WIDTH),
                                                      request_id)
        return outcome, body.batch_size, len(reply), error, (reply, head)

    def infer_pooled(self, stream: int, request_id: bytes) -> tuple[int, int, int, str, Any]:
        wires = self.wires[stream]
        k = self.cursor[stream] = (self.cursor[stream] + 1) % len(wires)
        wire = wires[k]
        outcome, body, head, error = self.conn.infer(wire, request_id)
        return outcome, wire.batch_size, len(body), error, (body, head)

    def trace(self, source: Any) -> Any:
        body, head = source
        return http_trace(body, json_header_length(head))

    def stream_infer(self, stream: int, request_id: bytes, plan: CancelPlan) -> tuple[StreamResult, int]:
        bodies = self.sse[stream]
        k = self.cursor[stream] = (self.cursor[stream] + 1) % len(bodies)
        head, tail = bodies[k]
        return self.sse_conn.stream((head, request_id, tail), plan), 1

    def close(self) -> None:
        super().close()
        self.conn.close()
        self.sse_conn.close()


class _GrpcLane(_Lane):
    protocol, request_type = "grpc", "gRPC"

    def __init__(self, pools: list[Pool], conn: GrpcStreamConnection, engine: TrafficEngine | None = None,
                 url: str = "") -> None:
        super().__init__(pools, engine, lambda: grpc_control(url))
        self.conn = conn
        self.block = conn.block(MODEL_INFER)

    def send_prepared(self, stream: int, prepared: Prepared, request_id: bytes) -> tuple[int, int, int, str, Any]:
        """Encode ``prepared`` as a ``ModelInferRequest`` and send it."""
        pool = self.pools[stream]
        body = encode_grpc(pool.resolved, prepared.arrays, prepared.extra, prepared.placement)
        outcome, reply, error = self.conn.infer(self.block, (body, _ID_TAG, request_id))
        return outcome, pool.batch_sizes[0], len(reply), error, reply

    def infer_pooled(self, stream: int, request_id: bytes) -> tuple[int, int, int, str, Any]:
        pool = self.pools[stream]
        k = self.cursor[stream] = (self.cursor[stream] + 1) % len(pool.grpc)
        outcome, reply, error = self.conn.infer(self.block, (pool.grpc[k], _ID_TAG, request_id))
        return outcome, pool.batch_sizes[k], len(reply), error, reply

    def trace(self, source: Any) -> Any:
        return grpc_trace(source)

    def stream_infer(self, stream: int, request_id: bytes, plan: CancelPlan) -> tuple[StreamResult, int]:
        pool = self.pools[stream]
        k = self.cursor[stream] = (self.cursor[stream] + 1) % len(pool.grpc)
        return self.conn.stream((pool.grpc[k], _ID_TAG, request_id), plan), pool.batch_sizes[k]

    def close(self) -> None:
        super().close()
        self.conn.close()


class _Fixed:
    """The picker of a user dedicated to one stream: that stream in the phases that give it weight, else idle."""

    def __init__(self, scenario: Any, stream: int) -> None:
        self.by_phase = [stream if stream != IDLE and active(scenario, stream, i) else IDLE
                         for i in range(len(scenario.phases))]

    def pick(self, phase_index: int) -> int:
        """This user's stream in ``phase_index`` (or :data:`IDLE`)."""
        return self.by_phase[phase_index]


class TritonUser(User):
    """Base of the Triton users: stream choice, timing, accounting; subclasses supply the lane (protocol)."""

    abstract = True
    scenario: ClassVar[dict[str, Any] | None] = None
    """A scenario dict (see :mod:`rmt.core.scenario`); ``--rmt-scenario`` takes precedence."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.engine: TrafficEngine = engine_for(environment)
        self._lane: _Lane | None = None
        self._skeys: list[list[tuple[str, str, str]]] = []
        self._traced: list[bool] = []
        self._streaming: list[Any] = []
        """Per stream: its pattern's :class:`~rmt.core.scenario.StreamSpec` (streaming), or ``None`` (unary)."""
        self._rng = random.Random()
        """Which streaming requests are cancelled."""
        self._names: list[str] = []
        self._models: list[str] = []
        self._dedicated: Any = None
        """Closed loop with dedicated users: this user's picker (:class:`_Fixed` or a :class:`FreePicker`)."""

    # -- subclass hooks ----------------------------------------------------------------------------------------------
    def make_lane(self) -> _Lane:
        """Create this user's connection and wire forms."""
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def on_start(self) -> None:
        """Open the connection; in open loop, make sure the process's arrival driver runs."""
        lane = self._lane = self.make_lane()
        scenario = self.engine.require_scenario()
        self._names = [s.name for s in scenario.streams]
        self._models = [s.model for s in scenario.streams]
        self._skeys = [[(lane.protocol, s.name, p.name) for p in scenario.phases] for s in scenario.streams]
        self._traced = [p.resolved.traced for p in lane.pools]
        self._streaming = [p.resolved.pattern.stream if p.resolved.streaming else None for p in lane.pools]
        self._dedicated = None
        if scenario.mode == "closed" and total_dedicated(scenario):
            claimed = claim_stream(self.engine)
            self._dedicated = FreePicker(scenario, random.Random()) if claimed is None else _Fixed(scenario, claimed)
        self.engine.start_arrivals(self._dropped)

    def on_stop(self) -> None:
        """Close the connection."""
        if self._lane is not None:
            self._lane.close()

    def _dropped(self, stream: int, phase: int, delayed: bool, now_ns: int) -> None:
        self.engine.book.on_dropped(self._skeys[stream][phase], delayed, now_ns)

    # -- the loop ----------------------------------------------------------------------------------------------------
    def wait_time(self) -> float:
        """Closed loop: uniform(wait_s); open loop: none (the arrival queue paces)."""
        scenario = self.engine.scenario
        if scenario is None or scenario.mode == "open":
            return 0.0
        low, high = scenario.wait_s
        return low if low == high else random.uniform(low, high)

    def tasks_loop(self) -> None:
        """One iteration: one request (closed loop) or the next arrival (open loop)."""
        engine = self.engine
        if engine.draining:
            raise StopUser()
        scenario = engine.require_scenario()
        if scenario.mode == "open":
            engine.idle += 1
            try:
                intended, stream, phase, _ = engine.arrivals.get()
            finally:
                engine.idle -= 1
            if stream < 0 or engine.draining:
                raise StopUser()
            self.send(stream, phase, intended)
            return
        picker: Any = engine.picker
        assert picker is not None
        if self._dedicated is not None:  # a scenario with dedicated users per stream (``"users": N``)
            picker = self._dedicated
        # Without think time, keep sending for a short slice per task call: Locust's per-task bookkeeping would
        # otherwise cost as much CPU as the request itself. Draining and stopping are checked between requests.
        slice_end = time.perf_counter_ns() + (_SLICE_NS if scenario.wait_s == (0.0, 0.0) else 0)
        while True:
            now = time.perf_counter_ns()
            phase_index = engine.phase_index(now)
            if phase_index is None:  # every phase is over: stay idle until the run stops
                gevent.sleep(0.1)
                return
            stream = picker.pick(phase_index)
            if stream == IDLE:  # nothing for this user in this phase
                gevent.sleep(0.1)
                return
            self.send(stream, phase_index, now)
            if now >= slice_end or engine.draining:
                return

    tasks = [tasks_loop]  # noqa: RUF012 - Locust's own attribute

    def send(self, stream: int, phase: int, intended_ns: int) -> int:
        """Send one request of ``stream`` issued in ``phase`` at ``intended_ns`` (monotonic); returns the outcome."""
        engine = self.engine
        lane = self._lane
        assert lane is not None
        skey = self._skeys[stream][phase]
        book = engine.book
        request_id = engine.next_id()
        if lane.stateful[stream] is not None:
            lane.probe(stream, request_id)
        sent = time.perf_counter_ns()
        book.on_sent(skey, sent + engine.epoch_offset_ns)
        if self._streaming[stream] is not None:
            return self._send_stream(lane, stream, skey, request_id, intended_ns, sent)
        outcome, batch, length, error, source = lane.infer(stream, request_id)
        done = time.perf_counter_ns()
        done_epoch = done + engine.epoch_offset_ns
        latency_us = (done - intended_ns) / 1000
        book.on_done(skey, outcome, batch, latency_us, (done - sent) / 1000, done_epoch)
        if outcome == OK and self._traced[stream] and engine.traces.take(done_epoch):
            self._keep_trace(lane, source, skey, request_id, intended_ns, sent, done)
        elif outcome != OK:
            book.failures.offer(done_epoch, self._models[stream], error)
        self.environment.events.request.fire(
            request_type=lane.request_type, name=self._names[stream], response_time=latency_us / 1000,
            response_length=length, response=None, context={"phase": skey[2]},
            exception=None if outcome == OK else TritonRequestError(f"{OUTCOMES[outcome]}: {error}"),
        )
        return outcome

    def _send_stream(self, lane: _Lane, stream: int, skey: tuple[str, str, str], request_id: bytes,
                     intended_ns: int, sent: int) -> int:
        """The streaming half of :meth:`send`: one Locust event with the whole stream's time, details in windows."""
        engine = self.engine
        result, batch = lane.stream_infer(stream, request_id, draw_cancel(self._streaming[stream], self._rng))
        done = time.perf_counter_ns()
        done_epoch = done + engine.epoch_offset_ns
        engine.book.on_stream_done(skey, result, batch, intended_ns, sent, done, done_epoch)
        outcome = result.outcome
        if outcome == OK and result.responses and self._traced[stream] and engine.traces.take(done_epoch):
            self._keep_trace(lane, result, skey, request_id, intended_ns, sent, done, _stream_trace)
        elif outcome != OK:
            engine.book.failures.offer(done_epoch, self._models[stream], result.error)
        self.environment.events.request.fire(
            request_type=f"{lane.request_type} stream", name=self._names[stream],
            response_time=(done - intended_ns) / 1e6, response_length=result.length, response=None,
            context={"phase": skey[2], "responses": result.responses, "final": result.final,
                     "first_response_ms": (result.first_ns - intended_ns) / 1e6 if result.responses else None,
                     "outcome": "cancelled" if result.cancelled and outcome == OK else OUTCOMES[outcome]},
            exception=None if outcome == OK else TritonRequestError(f"{OUTCOMES[outcome]}: {result.error}"),
        )
        return outcome

    def _keep_trace(self, lane: _Lane, source: Any, skey: tuple[str, str, str], request_id: bytes,
                    intended: int, sent: int, done: int, parse: Any = None) -> None:
        rows = (parse or lane.trace)(source)
        if rows is None:
            return
        offset = self.engine.epoch_offset_ns
        for row_index, row in enumerate(rows.tolist()):
            pid, instance, exec_index, start, end, device, cold = row
            self.engine.book.on_trace({
                "protocol": skey[0], "stream": skey[1], "phase": skey[2], "request_id": request_id.decode(),
                "intended_ns": intended + offset, "sent_ns": sent + offset, "done_ns": done + offset,
                "row": row_index, "pid": pid, "instance_index": instance, "exec_index": exec_index,
                "start_ns": start, "end_ns": end, "device_id": device, "cold": cold,
            }, skey, done + offset)


class TritonHttpUser(TritonUser):
    """Triton over HTTP/REST with the binary tensor extension, on a lean keep-alive connection per user."""

    abstract = True

    def make_lane(self) -> _Lane:
        """One HTTP connection to ``--host``."""
        host, port = split_host(self.host or self.environment.host, 8000)
        pools = self.engine.pools("http", f"{host}:{port}", fetch_config_http(f"{host}:{port}"))
        return _HttpLane(pools, host, port, self.engine.require_scenario().network_timeout_s, self.engine)


class TritonGrpcUser(TritonUser):
    """Triton over gRPC: raw ``ModelInfer`` bytes on a lean HTTP/2 connection of the user's own
    (:class:`rmt.load.grpcwire.GrpcConnection`), as a fleet of independent clients would have.

    grpcio is not on the hot path: under gevent each of its calls crosses from grpc's poller threads to the gevent hub,
    several times this connection's client CPU per call (docs/benchmarks.md, rmt.load).
    """

    abstract = True

    def make_lane(self) -> _Lane:
        """A lane on a new connection to ``--host`` (the gRPC ``host:port``)."""
        host, port = split_host(grpc_host(self.environment) or self.host or self.environment.host, 8001)
        url = f"{host}:{port}"
        conn = GrpcStreamConnection(host, port, self.engine.require_scenario().network_timeout_s)
        pools = self.engine.pools("grpc", url, fetch_config_grpc(url))
        return _GrpcLane(pools, conn, self.engine, url)
