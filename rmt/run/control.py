"""Model-control actions of a scenario, run by the Locust master against Triton's HTTP API (explicit mode).

- ``{"kind": "load", "models": [...], "poll_ms": 5}``: before traffic (at ``init``), unload each model if loaded,
  then load it while a second greenlet polls ``GET v2/models/<m>/ready``. The traffic that follows is the
  cold-start probe.
- ``{"kind": "reload", "model": "rl_low", "at_s": 8, "set": {"instance_group.0.rate_limiter.priority": 1}}``: during
  the run, ``at_s`` seconds after the test starts, load the model again with its current config changed by ``set``
  (Triton's config override, ``parameters.config``), under load, polling readiness. ``"unload_first": true``
  unloads the model before loading it again — the non-atomic reload a careless operator (or tool) does, which fails
  the requests that arrive in between (the reload window then starts at the unload).

Records (the checkers' formats, registered in :mod:`rmt.check.records`): every readiness poll in ``readiness.jsonl``;
``load_start``/``loaded`` and ``reload_start``/``reload_end`` (detail: the config changes) in ``events.jsonl``.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rmt.check import records as _records  # noqa: F401 - registers readiness.jsonl and events.jsonl
from rmt.core.errors import ConfigError
from rmt.core.rundir import RunDir

READINESS_FILE = "readiness.jsonl"
EVENTS_FILE = "events.jsonl"
POLL_WAIT_S = 0.1
"""How long a readiness poll waits for its answer before it is retried on a new connection (doubling while stuck)."""


@dataclass
class ModelControlRecord:
    """The outcome of one load/reload of one model (kept in memory for logs; the files hold the evidence)."""

    model: str
    action: str
    """``load`` (fresh: unloaded first) or ``reload`` (with a config override, under load)."""
    requested_ns: int
    """Epoch ns when the request was sent."""
    returned_ns: int
    """Epoch ns when Triton answered."""
    ok: bool
    first_ready_ns: int | None = None
    """Epoch ns of the first poll answering ready after the request (None: never while polled)."""
    polls: list[tuple[int, bool]] = field(default_factory=list)
    """(epoch ns of the reply, ready) of every poll."""
    error: str = ""
    config_changes: dict[str, Any] = field(default_factory=dict)

    def write(self, run_dir: RunDir) -> None:
        """Append the polls to ``readiness.jsonl`` and the start/end events to ``events.jsonl``."""
        run_dir.append(READINESS_FILE, [{"t_ns": t, "model": self.model, "ready": r} for t, r in self.polls])
        start, end = ("load_start", "loaded") if self.action == "load" else ("reload_start", "reload_end")
        detail: dict[str, Any] = {"ok": self.ok, **({"error": self.error} if self.error else {}),
                                  **({"changes": self.config_changes} if self.config_changes else {})}
        events = [{"t_ns": self.requested_ns, "model": self.model, "event": start, "detail": {}}]
        if self.ok:
            events.append({"t_ns": self.returned_ns, "model": self.model, "event": end, "detail": detail})
        run_dir.append(EVENTS_FILE, events, flush=True)


class TritonControl:
    """Triton's model-repository API over HTTP (``host:port``), one short-lived connection per call."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 300.0,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.host, self.port, self.timeout_s, self.clock_ns = host, port, timeout_s, clock_ns

    def call(self, method: str, path: str, body: Any = None, timeout_s: float | None = None) -> tuple[int, str]:
        """(status, text) of one request; ConfigError when the server cannot be reached."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s or self.timeout_s)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        except OSError as exc:
            raise ConfigError(f"cannot reach tritonserver at {self.host}:{self.port} ({exc}): fix --host") from exc
        finally:
            conn.close()

    def ready(self, model: str, timeout_s: float = 10.0) -> bool:
        """Whether ``model`` is ready for inference (ConfigError when no answer comes within ``timeout_s``)."""
        return self.call("GET", f"/v2/models/{model}/ready", timeout_s=timeout_s)[0] == 200

    def config(self, model: str) -> dict[str, Any]:
        """The model's current configuration (JSON)."""
        status, text = self.call("GET", f"/v2/models/{model}/config", timeout_s=30)
        if status != 200:
            raise ConfigError(f"model {model!r} has no config on the server ({_message(text)}): fix the model name")
        data: dict[str, Any] = json.loads(text)
        return data

    def states(self) -> dict[str, str]:
        """Each repository model's state (``READY``, ``LOADING``, ``UNLOADING``, ``UNAVAILABLE``) from the index."""
        status, text = self.call("POST", "/v2/repository/index", {}, timeout_s=30)
        if status != 200:
            raise ConfigError(f"cannot read the model repository index ({_message(text)}): start tritonserver "
                              "with --model-control-mode=explicit")
        return {str(m.get("name")): str(m.get("state", "")) for m in json.loads(text)}

    def unload(self, model: str, deadline_s: float = 60.0) -> None:
        """Unload ``model`` (no-op when it is not loaded) and wait until it is gone.

        Triton answers the unload at once and reports the model not ready, but keeps it ``UNLOADING`` until its
        in-flight requests and its instances are done (~2.5 s for a python model); a load sent meanwhile finds it
        half there. "Gone" is the index no longer saying ``READY`` or ``UNLOADING``."""
        if not self.ready(model):
            return
        status, text = self.call("POST", f"/v2/repository/models/{model}/unload", {})
        if status != 200:
            raise ConfigError(f"cannot unload model {model!r} ({_message(text)}): start tritonserver with "
                              "--model-control-mode=explicit")
        end = time.monotonic() + deadline_s
        while self.states().get(model) in ("READY", "UNLOADING"):
            if time.monotonic() > end:
                raise ConfigError(f"model {model!r} still not unloaded {deadline_s:.0f} s after the unload request")
            time.sleep(0.01)

    def load_polling(self, model: str, action: str, *, poll_ms: float = 5.0, override: dict[str, Any] | None = None,
                     changes: dict[str, Any] | None = None) -> ModelControlRecord:
        """Load ``model`` (with a config override) while polling its readiness; the record of what happened."""
        body = {"parameters": {"config": json.dumps(override)}} if override is not None else {}
        done = threading.Event()
        polls: list[tuple[int, bool]] = []
        first_ready: list[int] = []

        def poll() -> None:
            # Triton answers a connection on one of its HTTP threads; a poll that lands on the thread serving the load
            # waits for the whole load (seen every other load when the poller is a greenlet). Such a poll is given up
            # after ``wait_s`` and retried on a new connection; the wait doubles while polls keep timing out, so a
            # slow, busy server still gets answered. A poll refused at once (no server) waits its period like any.
            wait_s = POLL_WAIT_S
            while not done.is_set():
                try:
                    ready = self.ready(model, timeout_s=wait_s)
                except ConfigError:
                    wait_s = min(2 * wait_s, 10.0)
                    done.wait(poll_ms / 1000)
                    continue
                wait_s = POLL_WAIT_S
                t = self.clock_ns()  # when the answer arrived
                polls.append((t, ready))
                if ready and not first_ready and (action == "load" or any(not r for _, r in polls)):
                    first_ready.append(t)
                done.wait(poll_ms / 1000)

        poller = threading.Thread(target=poll, name=f"rmt-ready-{model}", daemon=True)
        requested = self.clock_ns()
        poller.start()
        try:
            status, text = self.call("POST", f"/v2/repository/models/{model}/load", body)
        finally:
            returned = self.clock_ns()
            end = time.monotonic() + 5.0
            while status == 200 and not first_ready and time.monotonic() < end and action == "load":
                time.sleep(poll_ms / 1000)
            done.set()
            poller.join(timeout=15)
        return ModelControlRecord(model, action, requested, returned, status == 200,
                                  first_ready[0] if first_ready else None, polls,
                                  "" if status == 200 else _message(text), dict(changes or {}))


def _message(text: str) -> str:
    try:
        return str(json.loads(text).get("error", text))
    except (json.JSONDecodeError, AttributeError):
        return " ".join(text.split())[:200]


def set_path(config: dict[str, Any], path: str, value: Any) -> None:
    """Set ``a.0.b`` (dict keys and list indexes) in ``config``, creating dicts on the way."""
    node: Any = config
    parts = path.split(".")
    for key in parts[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def run_load(control: TritonControl, action: dict[str, Any], run_dir: RunDir | None) -> list[ModelControlRecord]:
    """A ``load`` action: fresh loads (unload first), readiness polled; ConfigError when a load fails."""
    records = []
    for model in action.get("models", []):
        control.unload(model)
        rec = control.load_polling(model, "load", poll_ms=float(action.get("poll_ms", 5)))
        records.append(rec)
        if run_dir is not None:
            rec.write(run_dir)
        if not rec.ok:
            raise ConfigError(f"cannot load model {model!r} (Triton: {rec.error}): start tritonserver with "
                              "--model-control-mode=explicit and a repository holding the model")
    return records


def run_reload(control: TritonControl, action: dict[str, Any], run_dir: RunDir | None) -> ModelControlRecord:
    """A ``reload`` action: the model's current config changed by ``set``, loaded again, readiness polled."""
    model = str(action["model"])
    changes = dict(action.get("set", {}))
    config = control.config(model)
    for path, value in changes.items():
        try:
            set_path(config, path, value)
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ConfigError(f"reload {model}: cannot set {path} in its config ({exc}): fix the path") from exc
    requested = control.clock_ns()
    if action.get("unload_first"):  # the non-atomic reload: the model is gone until the load completes
        control.unload(model)
    rec = control.load_polling(model, "reload", poll_ms=float(action.get("poll_ms", 5)), override=config,
                               changes=changes)
    if action.get("unload_first"):
        rec.requested_ns = requested
        rec.config_changes = {**rec.config_changes, "unload_first": True}
    if run_dir is not None:
        rec.write(run_dir)
    return rec
