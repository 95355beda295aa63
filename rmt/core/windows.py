"""Per-second, per-stream load windows and probe execution traces: the records and their exact merge.

A window holds what happened in one second (epoch) under the key ``(window, protocol, stream, phase)`` where *phase*
is the phase the request was issued in (see :class:`rmt.load.windows.WindowBook`, which counts them).
:class:`WindowState` merges exactly (counts add, HDR histograms add), so N workers combine into the same numbers one
process would see; its wire form (:meth:`WindowState.to_wire`) is what workers send the master.

The records written to the run directory (fields and units documented below) are :class:`LoadWindow`
(``windows.jsonl``) and :class:`ProbeTrace` (``traces.jsonl``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from hdrh.histogram import HdrHistogram

from rmt.core.hdr import encode_histogram, new_histogram, percentile_us
from rmt.core.hdrwire import add_encoded

NS_PER_S = 1_000_000_000
WINDOWS_FILE = "windows.jsonl"
TRACES_FILE = "traces.jsonl"

WindowKey = tuple[int, str, str, str]
"""``(window_start_ns, protocol, stream, phase)``."""


@dataclass
class LoadWindow:
    """One second of one stream in one phase, merged over every load process (``windows.jsonl``)."""

    window_start_ns: int
    """Epoch ns at which the 1-second window starts (a whole second)."""
    window_s: float
    """Window length in s (always 1.0)."""
    protocol: str
    """``http`` or ``grpc``."""
    stream: str
    """``model/p<priority>/<pattern>`` (also the Locust request name)."""
    model: str
    priority: int
    """Triton request priority sent (0: the model's default level)."""
    pattern: str
    phase: str
    """Phase the requests were issued in."""
    sent: int
    """Requests sent in this window (count)."""
    succeeded: int
    """Replies without error received in this window (count)."""
    inferences: int
    """Batch rows of the succeeded requests (count; comparable to Triton's inference_count)."""
    failed_timeout: int
    """Triton rejected the request when its queue timeout expired ("Request timeout expired") (count)."""
    failed_rejected: int
    """Triton's queue was full ("Exceeds maximum queue size"); not in Triton's model stats (count)."""
    failed_server: int
    """Any other error reply from Triton (model error, invalid input, unknown model) (count)."""
    failed_client: int
    """No reply: connection refused/reset, client-side timeout, broken reply (count)."""
    dropped_cap: int
    """Open loop: arrivals never sent because every user was busy and the backlog full (count)."""
    delayed_cap: int
    """Open loop: arrivals that waited in the backlog for a free user, then were sent late (count)."""
    in_flight: int
    """Requests of this key sent but not answered at the window's end, summed over processes (count)."""
    in_flight_max: int
    """Sum over processes of each process's largest in-flight count during the window (count, an upper bound)."""
    latency_us_hdr: str
    """HDR histogram (compressed base64) of latency from the *intended* send time to the reply, in µs."""
    service_us_hdr: str
    """HDR histogram (compressed base64) of service time from the actual send to the reply, in µs."""
    latency_p50_us: float
    """Median latency in µs (NaN/null when nothing completed)."""
    latency_p99_us: float
    """99th-percentile latency in µs."""
    latency_max_us: float
    """Largest latency in µs."""
    service_p50_us: float
    """Median service time in µs."""
    service_p99_us: float
    """99th-percentile service time in µs."""
    traced: int
    """Probe trace rows recorded for this key in this window (count; one per batch row of a traced request)."""
    processes: int
    """Load processes that contributed to this record (count)."""
    cancelled: int = 0
    """Streaming requests the client cancelled on purpose (the pattern's cancel plan) (count; not in succeeded)."""
    responses: int = 0
    """Data responses of streaming requests received in this window (count; unary requests: 0)."""
    finals: int = 0
    """Streaming requests whose final flag arrived (count)."""
    completed_responses: int = 0
    """Data responses of the streaming requests that completed in this window (count; ``stream_completeness``
    holds them to the pattern's promised responses × completed requests)."""
    gap_us_hdr: str = ""
    """HDR histogram (compressed base64) of the gaps between consecutive responses of a streaming request, in µs.
    For streaming requests ``latency_us`` is the time to the *first* response (from the intended send) and
    ``service_us`` the whole stream (from the actual send to its end)."""
    gap_p99_us: float = math.nan
    """99th-percentile gap between responses in µs."""


@dataclass
class ProbeTrace:
    """One execution-trace row of a probe-style model's reply (``traces.jsonl``): client timing + server TRACE."""

    protocol: str
    stream: str
    phase: str
    request_id: str
    intended_ns: int
    """Epoch ns at which the request was meant to go out (open loop: its arrival)."""
    sent_ns: int
    """Epoch ns at which it was sent."""
    done_ns: int
    """Epoch ns at which the reply arrived."""
    row: int
    """Batch row of this trace."""
    pid: int
    """PID of the stub process that executed it."""
    instance_index: int
    exec_index: int
    """Executions of that instance before this one (warmup included)."""
    start_ns: int
    """Epoch ns (CLOCK_REALTIME in the stub) at which the execution started."""
    end_ns: int
    """Epoch ns at which the execution ended."""
    device_id: int
    cold: int
    """1 when the execution paid the model's simulated cold start."""


class WindowState:
    """The mergeable content of one window key: counters and two µs histograms."""

    __slots__ = ("counts", "gap", "in_flight", "in_flight_max", "latency", "processes", "service", "traced")

    #: Counter fields, in the order of :attr:`counts`.
    COUNTERS = ("sent", "succeeded", "inferences", "failed_timeout", "failed_rejected", "failed_server",
                "failed_client", "dropped_cap", "delayed_cap", "cancelled", "responses", "finals",
                "completed_responses")

    def __init__(self) -> None:
        self.counts = [0] * len(self.COUNTERS)
        self.in_flight = 0
        self.in_flight_max = 0
        self.traced = 0
        self.processes = 1
        self.latency = new_histogram()
        self.service = new_histogram()
        self.gap = new_histogram()

    def count(self, name: str) -> int:
        """The counter ``name`` (one of :attr:`COUNTERS`)."""
        return self.counts[self.COUNTERS.index(name)]

    def merge(self, other: WindowState) -> None:
        """Add ``other`` (another process's state of the same key) into this one."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.in_flight += other.in_flight
        self.in_flight_max += other.in_flight_max
        self.traced += other.traced
        self.processes += other.processes
        self.latency.add(other.latency)
        self.service.add(other.service)
        self.gap.add(other.gap)

    def to_wire(self) -> dict[str, Any]:
        """A msgpack/JSON-safe form (for ``report_to_master``)."""
        return {"c": list(self.counts), "f": self.in_flight, "m": self.in_flight_max, "t": self.traced,
                "p": self.processes, "l": encode_histogram(self.latency), "s": encode_histogram(self.service),
                "g": encode_histogram(self.gap)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> WindowState:
        """The inverse of :meth:`to_wire`."""
        state = cls()
        state.processes = 0
        state.merge_wire(data)
        return state

    def merge_wire(self, data: dict[str, Any]) -> None:
        """:meth:`merge` of another process's state in its :meth:`to_wire` form, histograms added straight from
        their wire form (:func:`rmt.core.hdrwire.add_encoded`: the master's cost per worker window)."""
        self.counts = [a + int(b) for a, b in zip(self.counts, data["c"], strict=True)]
        self.in_flight += int(data["f"])
        self.in_flight_max += int(data["m"])
        self.traced += int(data["t"])
        self.processes += int(data["p"])
        add_encoded(self.latency, data["l"])
        add_encoded(self.service, data["s"])
        add_encoded(self.gap, data.get("g", ""))

    def to_record(self, key: WindowKey) -> LoadWindow:
        """The :class:`LoadWindow` of this state."""
        start_ns, protocol, stream, phase = key
        model, priority, pattern = stream.split("/", 2)
        counts = dict(zip(self.COUNTERS, self.counts, strict=True))
        return LoadWindow(
            window_start_ns=start_ns, window_s=1.0, protocol=protocol, stream=stream, model=model,
            priority=int(priority[1:]), pattern=pattern, phase=phase, **counts, in_flight=self.in_flight,
            in_flight_max=self.in_flight_max, latency_us_hdr=encode_histogram(self.latency),
            service_us_hdr=encode_histogram(self.service), latency_p50_us=percentile_us(self.latency, 50),
            latency_p99_us=percentile_us(self.latency, 99),
            latency_max_us=float(self.latency.get_max_value()) if self.latency.get_total_count() else math.nan,
            service_p50_us=percentile_us(self.service, 50), service_p99_us=percentile_us(self.service, 99),
            traced=self.traced, processes=self.processes, gap_us_hdr=encode_histogram(self.gap),
            gap_p99_us=percentile_us(self.gap, 99))


def record_dict(record: LoadWindow | ProbeTrace) -> dict[str, Any]:
    """A record as the dict written to the run directory."""
    return asdict(record)


def window_from_dict(data: dict[str, Any]) -> LoadWindow:
    """A :class:`LoadWindow` read back from ``windows.jsonl`` (null → NaN)."""
    values: dict[str, Any] = {f.name: (math.nan if data.get(f.name) is None and f.type == "float"
                                       else data.get(f.name)) for f in fields(LoadWindow)}
    return LoadWindow(**values)


def histogram_of(records: list[dict[str, Any]], field_name: str = "latency_us_hdr") -> HdrHistogram:
    """Merge the histograms of ``windows.jsonl`` records (e.g. all windows of one stream and phase)."""
    hist = new_histogram()
    for record in records:
        if record.get(field_name):
            add_encoded(hist, str(record[field_name]))
    return hist
