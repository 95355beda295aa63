"""Model-control actions of a scenario, run by the Locust master against Triton's HTTP API (explicit mode).

- ``{"kind": "load", "models": [...], "poll_ms": 5}``: before traffic (at ``init``), unload each model if loaded,
  then load it while a second greenlet polls ``GET v2/models/<m>/ready``. The traffic that follows is the
  cold-start probe.
- ``{"kind": "reload", "model": "rl_low", "at_s": 8, "set": {"instance_group.0.rate_limiter.priority": 1}}``: during
  the run, ``at_s`` seconds after the test starts, load the model again with its current config changed by ``set``
  (Triton's config override, ``parameters.config``), under load, polling readiness. ``"unload_first": true``
  unloads the model before loading it again — the non-atomic reload a careless operator (or tool) does, which fails
  the requests that arrive in between (the reload window then starts at the unload).

Records (the formats of :mod:`rmt.core.records`): every readiness poll in ``readiness.jsonl``;
``load_start``/``loaded`` and ``reload_start``/``reload_end`` (detail: the config changes) in ``events.jsonl``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

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
    """Triton's model-repository API through :mod:`tritonclient.http` (``host:port``), a new connection per call.

    A new connection per call is what keeps the readiness poll of :meth:`load_polling` answered: Triton serves each
    connection on one of its HTTP threads, and a poll that shares a connection (or lands on the thread) serving a load
    waits for the whole load."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 300.0,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.host, self.port, self.timeout_s, self.clock_ns = host, port, timeout_s, clock_ns

    @contextlib.contextmanager
    def _client(self, timeout_s: float | None = None) -> Iterator[httpclient.InferenceServerClient]:
        """A client on its own connection, closed after use; ConfigError when the server cannot be reached."""
        wait_s = timeout_s or self.timeout_s
        client = httpclient.InferenceServerClient(f"{self.host}:{self.port}", connection_timeout=wait_s,
                                                  network_timeout=wait_s)
        try:
            yield client
        except (OSError, http.client.HTTPException) as exc:
            reason = str(exc) or type(exc).__name__
            raise ConfigError(f"cannot reach tritonserver at {self.host}:{self.port} ({reason}): fix --host") from exc
        finally:
            client.close()

    def ready(self, model: str, timeout_s: float = 10.0) -> bool:
        """Whether ``model`` is ready for inference (ConfigError when no answer comes within ``timeout_s``)."""
        with self._client(timeout_s) as client:
            return bool(client.is_model_ready(model))

    def config(self, model: str) -> dict[str, Any]:
        """The model's current configuration (JSON)."""
        with self._client(30) as client:
            try:
                data: dict[str, Any] = client.get_model_config(model)
            except InferenceServerException as exc:
                raise ConfigError(f"model {model!r} has no config on the server ({exc.message()}): fix the model "
                                  "name") from exc
        return data

    def states(self) -> dict[str, str]:
        """Each repository model's state (``READY``, ``LOADING``, ``UNLOADING``, ``UNAVAILABLE``) from the index."""
        with self._client(30) as client:
            try:
                index = client.get_model_repository_index()
            except InferenceServerException as exc:
                raise ConfigError(f"cannot read the model repository index ({exc.message()}): start tritonserver "
                                  "with --model-control-mode=explicit") from exc
        return {str(m.get("name")): str(m.get("state", "")) for m in index}

    def load(self, model: str, override: dict[str, Any] | None = None) -> str:
        """Load ``model`` (with its config replaced by ``override``); Triton's error, or '' once it is loaded."""
        with self._client() as client:
            try:
                client.load_model(model, config=None if override is None else json.dumps(override))
            except InferenceServerException as exc:
                return str(exc.message())
        return ""

    def unload(self, model: str, deadline_s: float = 60.0) -> None:
        """Unload ``model`` (no-op when it is not loaded) and wait until it is gone.

        Triton answers the unload at once and reports the model not ready, but keeps it ``UNLOADING`` until its
        in-flight requests and its instances are done (~2.5 s for a python model); a load sent meanwhile finds it
        half there. "Gone" is the index no longer saying ``READY`` or ``UNLOADING``."""
        if not self.ready(model):
            return
        with self._client() as client:
            try:
                client.unload_model(model)
            except InferenceServerException as exc:
                raise ConfigError(f"cannot unload model {model!r} ({exc.message()}): start tritonserver with "
                                  "--model-control-mode=explicit") from exc
        end = time.monotonic() + deadline_s
        while self.states().get(model) in ("READY", "UNLOADING"):
            if time.monotonic() > end:
                raise ConfigError(f"model {model!r} still not unloaded {deadline_s:.0f} s after the unload request")
            time.sleep(0.01)

    def load_polling(self, model: str, action: str, *, poll_ms: float = 5.0, override: dict[str, Any] | None = None,
                     changes: dict[str, Any] | None = None) -> ModelControlRecord:
        """Load ``model`` (with a config override) while polling its readiness; the record of what happened.

        ConfigError when the server cannot be reached; the poller has stopped by then either way."""
        done = threading.Event()
        polls: list[tuple[int, bool]] = []
        first_ready: list[int] = []

        def poll() -> None:
            # A poll that lands on the Triton HTTP thread serving the load waits for the whole load (seen every other
            # load when the poller is a greenlet). Such a poll is given up after ``wait_s`` and retried on a new
            # connection; the wait doubles while polls keep timing out, so a slow, busy server still gets answered.
            # A poll refused at once (no server) waits its period like any.
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
            error = self.load(model, override)
            returned = self.clock_ns()
            end = time.monotonic() + 5.0  # a fresh load: the polls go on until one answers ready
            while not error and not first_ready and time.monotonic() < end and action == "load":
                time.sleep(poll_ms / 1000)
        finally:
            done.set()
            poller.join(timeout=15)
        return ModelControlRecord(model, action, requested, returned, not error,
                                  first_ready[0] if first_ready else None, polls, error, dict(changes or {}))


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
