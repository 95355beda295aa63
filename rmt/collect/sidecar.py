"""Assemble a sidecar: the sources for one server, the collector writing a run directory, and its HTTP API.

>>> target = ServerTarget(http_url=server.http_url, metrics_url=server.metrics_url)
>>> with Sidecar(target, RunDir("runs/x"), SidecarOptions(port=0)) as sidecar:
...     print(sidecar.url)          # http://127.0.0.1:PORT (JSON under /api, Prometheus on /metrics)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rmt.collect.core import Collector
from rmt.collect.gpu import NvmlSource
from rmt.collect.http_api import ApiServer
from rmt.collect.model_stats import ModelStatsSource
from rmt.collect.nvml import Nvml
from rmt.collect.process_tree import ProcessTreeSource
from rmt.collect.shm import ShmSource
from rmt.collect.source import Source
from rmt.collect.target import ServerTarget
from rmt.collect.triton_metrics import TritonMetricsSource
from rmt.core.errors import ConfigError
from rmt.core.rundir import RunDir

#: Every source, in the order they are reported.
SOURCE_NAMES = ("process", "triton_metrics", "shm", "nvml", "model_stats")
#: The sources on by default (``model_stats`` is optional: per-batch-size detail Triton's metrics lack).
DEFAULT_SOURCES = ("process", "triton_metrics", "shm", "nvml")


@dataclass
class SidecarOptions:
    """How the sidecar samples and serves (one schema; the CLI and the Locust plugin fill it)."""

    interval_s: float = 0.1
    """Sampling interval of every source (default 10 Hz)."""
    timeout_s: float = 1.0
    """Per-source read timeout; a longer read is a gap."""
    sources: Sequence[str] = DEFAULT_SOURCES
    detail_every_s: float = 1.0
    """Process threads/fds/CPU cadence."""
    metrics_every_s: float = 0.5
    """Triton metrics cadence (the page is read at every tick that is a multiple of it; records exist only at those
    ticks, the manifest says ``every_s``). Triton's gauges (GPU and host memory and utilization, pinned pool) change
    only every ``--metrics-interval-ms`` (2 s by default), so 0.5 s loses nothing of them. Its counters (requests,
    inferences, cumulative durations) and ``nv_inference_pending_request_count`` move with every request: at 0.5 s
    their rates, the Little's-law concurrency and the completed-request axis of memory samples have 0.5 s resolution
    instead of one interval (a burst shorter than 0.5 s shows in the sum, not its shape; a change is seen up to
    0.5 s late). Each read is a loopback HTTP exchange, so the cost falls with the cadence
    (docs/benchmarks.md). Set it to ``interval_s`` for every tick."""
    nvml_every_s: float = 0.5
    """NVML cadence (records only at its ticks, like ``metrics_every_s``). Device memory, utilization and the
    compute-process list are driver calls whose CPU cost grows with the number of GPUs (per-GPU figures on an H100
    host: docs/benchmarks.md), so 10 Hz on a many-GPU box would cost several percent of a core. What 0.5 s loses:
    utilization is already an average the driver takes over its own 1/6-1 s sample period; device and per-process
    memory change with allocations, and a step is seen up to 0.5 s late (a leak of N bytes per request shows at 2
    points a second). Set it to ``interval_s`` for every tick."""
    shm_every_s: float = 0.5
    """Shared-memory regions cadence (records only at its ticks, like ``metrics_every_s``). A read is a ``stat`` per
    region (one per python-backend stub), a cost that grows with the stubs (docs/benchmarks.md). A region grows when
    the python backend enlarges its pool (``shm-growth-byte-size`` steps, rare events that stay): at 0.5 s such a
    step is seen up to 0.5 s late; the leak checks judge its size against the requests completed, which 0.5 s does
    not change. Set it to ``interval_s`` for every tick."""
    uss_every_s: float = 30.0
    """Process USS cadence, at least (see :class:`~rmt.collect.process_tree.ProcessTreeSource`: a round whose page
    walk costs more than ``USS_CPU_SHARE`` of a core at this cadence is repeated less often). A USS round is a
    kernel page walk over every process of the tree, far longer for a tritonserver that maps CUDA (figures:
    docs/benchmarks.md), so it runs seldom; RSS carries the leak signal."""
    host: str = "127.0.0.1"
    port: int | None = 0
    """HTTP API port (0: a free one; None: no HTTP API)."""
    name: str = "local"

    def validate(self) -> None:
        """Raise ConfigError naming the fix for the first bad option."""
        check_interval(self.interval_s, "--interval")
        check_interval(self.timeout_s, "--timeout")
        check_interval(self.detail_every_s, "--detail-every")
        check_interval(self.uss_every_s, "--uss-every")
        check_interval(self.metrics_every_s, "--metrics-every")
        check_interval(self.nvml_every_s, "--nvml-every")
        check_interval(self.shm_every_s, "--shm-every")
        unknown = [s for s in self.sources if s not in SOURCE_NAMES]
        if unknown or not self.sources:
            raise ConfigError(f"bad --sources {','.join(self.sources)!r}: choose from {','.join(SOURCE_NAMES)}")
        if self.port is not None and not 0 <= self.port < 65536:
            raise ConfigError(f"bad --port {self.port}: use 1-65535, or 0 for a free one")


def check_interval(value: float, flag: str) -> None:
    """A positive, finite number of seconds, else ConfigError naming ``flag``."""
    if not 0 < value < 1e6:
        raise ConfigError(f"bad {flag} {value!r}: give a positive number of seconds, e.g. 0.1")


def build_sources(target: ServerTarget, options: SidecarOptions, *, nvml: Nvml | None = None) -> list[Source]:
    """The sources named in ``options.sources``, all watching ``target``."""
    made: dict[str, Source] = {
        "process": ProcessTreeSource(target, timeout_s=options.timeout_s, detail_every_s=options.detail_every_s,
                                     uss_every_s=options.uss_every_s),
        "triton_metrics": TritonMetricsSource(target, timeout_s=options.timeout_s, every_s=options.metrics_every_s),
        "shm": ShmSource(target, timeout_s=options.timeout_s, every_s=options.shm_every_s),
        "nvml": NvmlSource(target, nvml=nvml, timeout_s=options.timeout_s, every_s=options.nvml_every_s),
        "model_stats": ModelStatsSource(target, timeout_s=options.timeout_s),
    }
    return [made[name] for name in options.sources]


class Sidecar:
    """A collector over one server's sources, with its HTTP API; ``start()``/``stop()`` or ``with``."""

    def __init__(self, target: ServerTarget, run_dir: RunDir | None, options: SidecarOptions | None = None, *,
                 nvml: Nvml | None = None) -> None:
        self.options = options or SidecarOptions()
        self.options.validate()
        self.target = target
        self.collector = Collector(build_sources(target, self.options, nvml=nvml), run_dir=run_dir,
                                   interval_s=self.options.interval_s, name=self.options.name)
        self.api: ApiServer | None = None
        if self.options.port is not None:
            self.api = ApiServer(self.collector, host=self.options.host, port=self.options.port)

    @property
    def url(self) -> str | None:
        """The HTTP API's base URL (None without one)."""
        return self.api.url if self.api is not None else None

    def start(self) -> Sidecar:
        """Start sampling, then serving."""
        self.collector.start()
        if self.api is not None:
            self.api.start()
        return self

    def stop(self) -> None:
        """Stop serving and sampling (joins every thread, flushes the run directory)."""
        if self.api is not None:
            self.api.stop()
        self.collector.stop()

    def __enter__(self) -> Sidecar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
