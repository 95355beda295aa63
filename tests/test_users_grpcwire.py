"""The lean gRPC connection (rmt.load.grpcwire): its HTTP/2 framing against a scripted peer, and its semantics
against the real tritonserver (outputs, Triton's errors, deadline, flow control, server stop and restart)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gevent
import hpack
import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from rmt.core.hosts import split_host
from rmt.load.grpcwire import MODEL_INFER, GrpcConnection, frame, grpc_timeout, request_block
from rmt.load.transport import CLIENT, OK, SERVER, TIMEOUT
from rmt.server import EmbeddedServer
from tests.zoo_client import zoo_subset


def model_infer(model: str, data: np.ndarray, datatype: str = "FP32", request_id: str = "rid-1",
                **parameters: int) -> bytes:
    """A serialized ModelInferRequest with INPUT0 = ``data`` (raw bytes as ``datatype``)."""
    request = service_pb2.ModelInferRequest(model_name=model, id=request_id)
    tensor = request.inputs.add(name="INPUT0", datatype=datatype)
    tensor.shape.extend(data.shape)
    request.raw_input_contents.append(data.tobytes())
    for key, value in parameters.items():
        request.parameters[key].int64_param = value
    return bytes(request.SerializeToString())


def output(reply: bytes, name: str) -> np.ndarray:
    """Output ``name`` of a serialized ModelInferResponse."""
    response = service_pb2.ModelInferResponse.FromString(reply)
    index = [o.name for o in response.outputs].index(name)
    dtype = {"FP32": np.float32, "INT64": np.int64}[response.outputs[index].datatype]
    return np.frombuffer(response.raw_output_contents[index], dtype=dtype).reshape(response.outputs[index].shape)


def connection(server: EmbeddedServer, deadline_s: float = 30.0) -> GrpcConnection:
    host, port = split_host(server.grpc_url, 8001)
    return GrpcConnection(host, port, deadline_s)


# -- framing, against a scripted peer -------------------------------------------------------------------------------

def test_request_block_is_the_grpc_request_headers() -> None:
    block = request_block("h:81", MODEL_INFER, 2.5)
    assert hpack.Decoder().decode(block) == [
        (":method", "POST"), (":scheme", "http"), (":path", MODEL_INFER), (":authority", "h:81"),
        ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-timeout", "2500000u"),
        ("user-agent", "rmt-grpcwire")]
    assert [grpc_timeout(s) for s in (0.0000001, 99.0, 1000.0, 1e6, 1e9)] == [
        b"1u", b"99000000u", b"1000000m", b"1000000S", b"99999999S"]


class Peer:
    """The server end of a socket pair: reads the client's frames, sends scripted ones (HPACK without a table)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.sock: socket.socket = self.listener
        self.encoder = hpack.Encoder()
        self.encoder.header_table_size = 0
        self.seen: list[tuple[int, int, int, bytes]] = []

    def exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "client closed"
            data += chunk
        return data

    def read_call(self) -> int:
        """Read frames up to a client stream's END_STREAM; returns that stream's id."""
        while True:
            head = self.exact(9)
            length, kind, flags = int.from_bytes(head[:3], "big"), head[3], head[4]
            stream = int.from_bytes(head[5:9], "big")
            self.seen.append((kind, flags, stream, self.exact(length)))
            if stream and flags & 1 and kind in (0, 1):
                return stream

    def headers(self, fields: list[tuple[str, str]]) -> bytes:
        return bytes(self.encoder.encode(fields, huffman=True))


class Scripted(threading.Thread):
    """The peer's side of a test in a thread; :meth:`finish` fails the test with whatever the script raised."""

    def __init__(self, peer: Peer, script: Callable[[Peer], None]) -> None:
        super().__init__(daemon=True)
        self.peer, self.script = peer, script
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.peer.sock, _ = self.peer.listener.accept()
            assert self.peer.exact(24) == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
            self.script(self.peer)
        except BaseException as exc:  # handed to the test's thread by finish()
            self.error = exc

    def finish(self, timeout_s: float = 10.0) -> None:
        """Wait for the script to end; re-raise its failure (an assertion included) in the test."""
        self.join(timeout_s)
        assert not self.is_alive(), f"the scripted peer did not finish within {timeout_s} s"
        if self.error is not None:
            raise self.error


def scripted(peer: Peer, script: Callable[[Peer], None]) -> Scripted:
    """Run ``script`` as the server end of ``peer`` once a client connects."""
    thread = Scripted(peer, script)
    thread.start()
    return thread


def test_a_failing_peer_script_fails_the_test() -> None:
    peer = Peer()

    def script(p: Peer) -> None:
        assert p.exact(3) == b"xyz", "the client sent something else"

    thread = scripted(peer, script)
    with socket.create_connection(peer.address, timeout=5) as client:
        client.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nabc")
        with pytest.raises(AssertionError, match="the client sent something else"):
            thread.finish()
    peer.sock.close()
    peer.listener.close()


def test_framing_continuation_padding_ping_settings_reset_and_goaway() -> None:
    peers = [Peer(), Peer()]
    connects: list[Peer] = []

    def connect(_address: Any, timeout: float) -> socket.socket:
        peer = peers[len(connects)]
        connects.append(peer)
        return socket.create_connection(peer.address, timeout=timeout)

    def first(peer: Peer) -> None:
        sid = peer.read_call()
        head = peer.headers([(":status", "200"), ("content-type", "application/grpc")])
        trailers = peer.headers([("grpc-status", "3"), ("grpc-message", "bad%20input%3A%20%C3%A9")])
        message = b"\x00\x00\x00\x00\x03abc"
        peer.sock.sendall(
            frame(4, 0, 0, (4).to_bytes(2, "big") + (1 << 20).to_bytes(4, "big"))  # SETTINGS: bigger window
            + frame(6, 0, 0, b"pingpong")  # PING
            + frame(1, 0, sid, head[:3]) + frame(9, 4, sid, head[3:])  # HEADERS split by a CONTINUATION
            + frame(0, 8, sid, b"\x02" + message + b"\x00\x00")  # padded DATA
            + frame(1, 5, sid, trailers))  # trailers: END_HEADERS | END_STREAM
        sid = peer.read_call()
        peer.sock.sendall(frame(3, 0, sid, (7).to_bytes(4, "big")))  # RST_STREAM REFUSED_STREAM

    def second(peer: Peer) -> None:
        sid = peer.read_call()
        assert sid == 1  # a new connection
        peer.sock.sendall(frame(7, 0, 0, bytes(8) + b"bye"))  # GOAWAY: last stream 0, NO_ERROR

    threads = [scripted(peers[0], first), scripted(peers[1], second)]
    conn = GrpcConnection("fake", 1, 5.0, connect=connect)
    block = conn.block(MODEL_INFER)
    status, message, reply = conn.call(block, [b"hello"])
    assert (status, message, reply) == (3, "bad input: é", b"abc")
    kinds = [(kind, flags, payload) for kind, flags, _, payload in peers[0].seen]
    assert kinds[0][:2] == (4, 0)  # the client's SETTINGS first
    assert kinds[1][0] == 8  # then its connection WINDOW_UPDATE
    assert kinds[2][:2] == (1, 4) and kinds[2][2] == block  # HEADERS, END_HEADERS
    assert kinds[3] == (0, 1, b"\x00\x00\x00\x00\x05hello")  # DATA, END_STREAM: gRPC prefix + message
    outcome, _, error = conn.infer(block, [b"again"])  # same connection, stream 3
    assert [s for k, _, s, _ in peers[0].seen if k == 1] == [1, 3]
    assert (4, 1, b"") in [(k, f, p) for k, f, _, p in peers[0].seen]  # SETTINGS ACK
    assert (6, 1, b"pingpong") in [(k, f, p) for k, f, _, p in peers[0].seen]  # PING ACK
    assert outcome == CLIENT and error == "gRPC UNAVAILABLE: tritonserver reset the stream (HTTP/2 error 7)"
    outcome, _, error = conn.infer(block, [b"third"])  # a reset closed the connection: a new one, stream 1
    assert len(connects) == 2
    assert outcome == CLIENT and error == "gRPC UNAVAILABLE: tritonserver sent GOAWAY (HTTP/2 error 0) bye"
    for thread in threads:
        thread.finish()
    conn.close()
    for peer in peers:
        peer.sock.close()
        peer.listener.close()


# -- semantics, against the real tritonserver -----------------------------------------------------------------------

def test_outputs_request_id_and_trace_round_trip(triton_server: EmbeddedServer) -> None:
    conn = connection(triton_server)
    data = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
    outcome, reply, error = conn.infer(conn.block(MODEL_INFER), [model_infer("probe", data, request_id="id-77")])
    assert (outcome, error) == (OK, "")
    assert service_pb2.ModelInferResponse.FromString(reply).id == "id-77"
    np.testing.assert_array_equal(output(reply, "OUTPUT0"), data)
    assert output(reply, "TRACE").shape == (3, 7)
    conn.close()


def test_replies_and_requests_beyond_the_64k_windows_flow(triton_server: EmbeddedServer) -> None:
    conn = connection(triton_server)
    block = conn.block(MODEL_INFER)
    for n in (100_000, 300_000):  # 400 KB and 1.2 MB each way: several windows and frames of 16 KiB
        data = np.arange(n, dtype=np.float32).reshape(1, n)
        outcome, reply, error = conn.infer(block, [model_infer("probe", data)])
        assert (outcome, error) == (OK, "")
        np.testing.assert_array_equal(output(reply, "OUTPUT0"), data)
    outcome, reply, _ = conn.infer(block, [model_infer("probe", np.ones((1, 16), np.float32))])
    assert outcome == OK and output(reply, "OUTPUT0").sum() == 16  # the connection stays in step after them
    conn.close()


@pytest.mark.parametrize(("model", "datatype", "expected"), [
    ("no_such_model", "FP32", "gRPC NOT_FOUND: Request for unknown model: 'no_such_model' is not found"),
    ("probe", "INT32", "gRPC INVALID_ARGUMENT: [request id: rid-1] inference input 'INPUT0' data-type is 'INT32', "
                       "but model 'probe' expects 'FP32'"),
])
def test_errors_carry_grpc_status_and_tritons_message(triton_server: EmbeddedServer, model: str, datatype: str,
                                                      expected: str) -> None:
    conn = connection(triton_server)
    block = conn.block(MODEL_INFER)
    outcome, reply, error = conn.infer(block, [model_infer(model, np.zeros((1, 16), np.float32), datatype)])
    assert (outcome, reply, error) == (SERVER, b"", expected)
    outcome, _, _ = conn.infer(block, [model_infer("probe", np.zeros((1, 16), np.float32))])
    assert outcome == OK
    conn.close()


def test_deadline_and_queue_timeout_reach_the_server(triton_server: EmbeddedServer) -> None:
    # queue_priority executes for 20 ms: the server itself ends a call whose grpc-timeout is 5 ms.
    conn = connection(triton_server, deadline_s=0.005)
    start = time.monotonic()
    body = model_infer("queue_priority", np.zeros((1, 4), np.float32))
    outcome, _, error = conn.infer(conn.block(MODEL_INFER), [body])
    assert (outcome, error) == (CLIENT, "gRPC DEADLINE_EXCEEDED: Deadline Exceeded")  # the server's own words
    assert time.monotonic() - start < 0.5  # well before the client's own grace ran out
    conn.close()
    # A 1 µs queue timeout (the request's ``timeout`` parameter) at priority 2 (REJECT) expires in Triton's queue.
    conn = connection(triton_server)
    body = model_infer("queue_priority", np.zeros((1, 4), np.float32), timeout=1, priority=2)
    outcome, _, error = conn.infer(conn.block(MODEL_INFER), [body])
    assert outcome == TIMEOUT and "Request timeout expired" in error, error
    conn.close()


@pytest.fixture
def probe_repository(tmp_path: Path) -> Iterator[Path]:
    yield zoo_subset(tmp_path / "repo", ["probe"])


def test_idle_connection_lets_the_server_stop_and_reconnects_after_restart(triton_server_factory: Any,
                                                                         probe_repository: Path) -> None:
    first = triton_server_factory(model_repository=probe_repository)
    ports = {"http_port": first.http_port, "grpc_port": first.grpc_port, "metrics_port": first.metrics_port}
    first_pid = first.pid
    conn = connection(first)
    block = conn.block(MODEL_INFER)
    body = model_infer("probe", np.zeros((1, 16), np.float32))
    assert conn.infer(block, [body])[0] == OK
    # Stopping gracefully, the server sends GOAWAY and a PING and holds on up to 20 s for the PING's ACK: the idle
    # connection answers from the gevent hub (run here by polling with gevent.sleep) and lets it go at once.
    stopper = threading.Thread(target=first.stop)
    start = time.monotonic()
    stopper.start()
    while stopper.is_alive():
        assert time.monotonic() - start < 60, "the server did not stop"
        gevent.sleep(0.05)
    assert time.monotonic() - start < 15
    outcome, _, error = conn.infer(block, [body])
    assert outcome == CLIENT and error.startswith("gRPC UNAVAILABLE: ConnectionRefusedError"), error
    second = triton_server_factory(model_repository=probe_repository, **ports)
    assert second.pid != first_pid
    assert conn.infer(block, [body])[0] == OK  # the same connection object opened a new socket
    conn.close()
