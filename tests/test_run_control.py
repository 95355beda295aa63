"""Model control through ``tritonclient.http`` (:class:`rmt.run.control.TritonControl`): on a real server in
explicit mode (load with readiness polled, reload with a config override, the index, unload, Triton's errors), and
against a server that is gone (one ConfigError, the readiness poller stopped)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rmt.core.errors import ConfigError
from rmt.pytest_plugin import ServerFactory
from rmt.run.control import TritonControl, run_load, run_reload
from rmt.server import free_port
from tests.zoo_client import zoo_subset


@pytest.fixture
def closing_port() -> Iterator[int]:
    """A port that accepts each connection and closes it unanswered (a server going away mid-request)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.mark.parametrize("gone", ["refused", "closed"])
def test_a_load_on_a_server_that_is_gone_is_one_error_and_the_poller_stops(gone: str, request: pytest.FixtureRequest
                                                                          ) -> None:
    port = free_port() if gone == "refused" else request.getfixturevalue("closing_port")
    control = TritonControl("127.0.0.1", port, timeout_s=2)
    with pytest.raises(ConfigError) as err:
        control.load_polling("probe", "load", poll_ms=5)
    message = str(err.value)
    assert message.startswith(f"cannot reach tritonserver at 127.0.0.1:{port} (") and message.endswith(": fix --host")
    assert len(message.splitlines()) == 1
    assert not [t for t in threading.enumerate() if t.name == "rmt-ready-probe"]  # joined before the error
    with pytest.raises(ConfigError, match="cannot reach tritonserver"):
        run_reload(control, {"model": "probe", "set": {"instance_group.0.count": 1}}, None)


def test_load_reload_with_override_index_and_unload_on_a_real_server(triton_server_factory: ServerFactory,
                                                                       tmp_path: Path) -> None:
    server = triton_server_factory(model_repository=zoo_subset(tmp_path / "repo", ["probe"]),
                                   model_control_mode="explicit", load_models=[])
    host, port = server.http_url.rsplit(":", 1)
    control = TritonControl(host, int(port))
    assert control.states().get("probe") != "READY" and not control.ready("probe")

    [rec] = run_load(control, {"kind": "load", "models": ["probe"]}, None)
    assert rec.ok and rec.error == "" and rec.first_ready_ns is not None
    assert rec.requested_ns < rec.first_ready_ns
    assert any(not ready and t > rec.requested_ns for t, ready in rec.polls)  # polled while it loaded
    assert control.states()["probe"] == "READY" and control.ready("probe")

    reload = run_reload(control, {"model": "probe", "set": {"instance_group.0.count": 1}}, None)
    assert reload.ok and reload.config_changes == {"instance_group.0.count": 1}
    assert control.config("probe")["instance_group"][0]["count"] == 1  # Triton took the override

    missing = control.load_polling("no_such_model", "load")
    assert not missing.ok and "no_such_model" in missing.error
    with pytest.raises(ConfigError, match=r"cannot load model 'no_such_model' \(Triton: .*no_such_model"):
        run_load(control, {"kind": "load", "models": ["no_such_model"]}, None)
    with pytest.raises(ConfigError, match="model 'no_such_model' has no config on the server"):
        control.config("no_such_model")

    control.unload("probe")
    assert control.states()["probe"] not in ("READY", "UNLOADING") and not control.ready("probe")
