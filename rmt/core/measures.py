"""The one table of measurement kinds: name, unit, source and which direction is better.

Every series rmt records (a collector sample field, a load-window field) is a :class:`Measure` in :data:`MEASURES`.
The table is static: one block per source below, named after it (:data:`NVML`, :data:`PROCESS`,
:data:`TRITON_METRICS`, :data:`MODEL_STATS`, :data:`SHM`, :data:`LOAD`), which that source's module imports to know
what it reads; nothing is added at import time, so a reader of a run directory (the checkers, the report) sees every
measure without importing the collector or the load generator. The checks' own measures are declared on each check
class (``rmt.check``). Names carry their unit (``*_bytes``, ``*_us``, ``*_ns``, ``*_total``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

UNITS = ("bytes", "us", "ns", "s", "count", "ratio", "percent", "per_s", "info", "watts", "joules")
BETTER = ("lower", "higher", "none")


@dataclass(frozen=True)
class Measure:
    """One kind of measurement."""

    name: str
    unit: str
    """One of :data:`UNITS`."""
    source: str
    """Where it comes from, e.g. ``nvml``, ``process``, ``triton_metrics``, ``rmt.load``."""
    better: str
    """``lower``, ``higher`` or ``none`` (informational)."""
    doc: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"measure {self.name}: unit {self.unit!r} is not one of {UNITS}")
        if self.better not in BETTER:
            raise ValueError(f"measure {self.name}: better {self.better!r} is not one of {BETTER}")


def table(source: str, rows: Iterable[tuple[str, str, str, str]]) -> dict[str, Measure]:
    """One source's measures from ``(name, unit, better, doc)`` rows, keyed by name."""
    return {name: Measure(name, unit, source, better, doc) for name, unit, better, doc in rows}


def merge(*tables: Mapping[str, Measure]) -> dict[str, Measure]:
    """The union of several tables; a name declared twice is a programming error."""
    out: dict[str, Measure] = {}
    for part in tables:
        for name, measure in part.items():
            if name in out:
                raise ValueError(f"measure {name} declared by both {out[name].source} and {measure.source}")
            out[name] = measure
    return out


#: Source ``nvml`` (:mod:`rmt.collect.gpu`): per-GPU memory and utilization, per-process GPU memory.
NVML = table("nvml", (
    ("gpu_memory_used_bytes", "bytes", "lower", "device memory in use on one GPU (NVML)"),
    ("gpu_memory_free_bytes", "bytes", "higher", "device memory free on one GPU (NVML)"),
    ("gpu_memory_total_bytes", "bytes", "none", "device memory size of one GPU (NVML)"),
    ("gpu_memory_reserved_bytes", "bytes", "none", "memory the driver reserves (v2 API only; NaN under v1)"),
    ("gpu_utilization_percent", "percent", "none", "time a kernel ran over NVML's last sample period"),
    ("gpu_memory_utilization_percent", "percent", "none", "time device memory was read or written"),
    ("gpu_process_memory_bytes", "bytes", "lower", "GPU memory of one compute process (NVML per-process)"),
    ("gpu_tree_memory_bytes", "bytes", "lower", "GPU memory of the Triton tree's processes on one GPU"),
    ("gpu_other_processes_memory_bytes", "bytes", "none", "GPU memory of compute processes outside the tree"),
))

#: Source ``process`` (:mod:`rmt.collect.process_tree`): the Triton process tree's memory, threads, fds, CPU time.
PROCESS = table("process", (
    ("process_rss_bytes", "bytes", "lower", "resident set size of one process of the Triton tree"),
    ("process_uss_bytes", "bytes", "lower", "unique set size (private pages) of one process; NaN where not readable"),
    ("process_threads_count", "count", "none", "threads of one process"),
    ("process_open_fds_count", "count", "none", "open file descriptors of one process"),
    ("process_cpu_s", "s", "none", "user + system CPU time of one process since it started"),
    ("process_tree_rss_bytes", "bytes", "lower", "sum of RSS over the server and all its descendants"),
    ("process_tree_uss_bytes", "bytes", "lower", "sum of USS over the tree; NaN when any process' USS is unreadable"),
    ("process_tree_processes_count", "count", "none", "processes in the tree (server + stubs + others)"),
))

#: Source ``triton_metrics`` (:mod:`rmt.collect.triton_metrics`): the Triton metrics it keeps, under Triton's names.
TRITON_METRICS = table("triton_metrics", (
    ("nv_inference_request_success", "count", "none", "successful inference requests (cumulative, per model)"),
    ("nv_inference_request_failure", "count", "lower", "failed requests by reason (cumulative, per model)"),
    ("nv_inference_count", "count", "none", "inferences performed, batch rows counted (cumulative)"),
    ("nv_inference_exec_count", "count", "none", "model executions (batches) performed (cumulative)"),
    ("nv_inference_pending_request_count", "count", "lower", "requests queued, rate limiter included (gauge)"),
    ("nv_inference_request_duration_us", "us", "lower", "cumulative end-to-end request time"),
    ("nv_inference_queue_duration_us", "us", "lower", "cumulative time requests waited in the queue"),
    ("nv_inference_compute_input_duration_us", "us", "lower", "cumulative input-processing time"),
    ("nv_inference_compute_infer_duration_us", "us", "lower", "cumulative model execution time"),
    ("nv_inference_compute_output_duration_us", "us", "lower", "cumulative output-processing time"),
    ("nv_pinned_memory_pool_total_bytes", "bytes", "none", "pinned memory pool size"),
    ("nv_pinned_memory_pool_used_bytes", "bytes", "lower", "pinned memory pool in use"),
    ("nv_gpu_memory_total_bytes", "bytes", "none", "GPU memory size (DCGM, per GPU)"),
    ("nv_gpu_memory_used_bytes", "bytes", "lower", "GPU memory in use, device-wide (DCGM, per GPU)"),
    ("nv_gpu_utilization", "ratio", "none", "GPU utilization 0..1 over Triton's metrics interval"),
    ("nv_gpu_power_usage", "watts", "lower", "GPU power draw"),
    ("nv_gpu_power_limit", "watts", "none", "GPU power limit"),
    ("nv_energy_consumption", "joules", "lower", "GPU energy since Triton started"),
    ("nv_cpu_memory_total_bytes", "bytes", "none", "host memory size (machine-wide)"),
    ("nv_cpu_memory_used_bytes", "bytes", "lower", "host memory in use, machine-wide (MemTotal-MemAvailable)"),
    ("nv_cpu_utilization", "ratio", "none", "host CPU utilization 0..1 (machine-wide)"),
    ("nv_cache_num_hits_per_model", "count", "none", "response-cache hits (cumulative, per model)"),
    ("nv_cache_num_misses_per_model", "count", "none", "response-cache misses (cumulative, per model)"),
    ("nv_cache_num_entries", "count", "none", "entries in the response cache (server-wide, per metrics interval)"),
    ("nv_cache_num_evictions", "count", "none", "response-cache evictions (cumulative, server-wide)"),
    ("nv_cache_util", "ratio", "none", "share of the response cache in use 0..1 (server-wide)"),
))

#: Source ``model_stats`` (:mod:`rmt.collect.model_stats`): Triton's ``v2/models/stats``, raw.
MODEL_STATS = table("model_stats", (
    ("model_inference_count", "count", "none", "inferences of one model version, batch rows counted (cumulative)"),
    ("model_execution_count", "count", "none", "executions (batches) of one model version (cumulative)"),
    ("model_stat_count", "count", "none", "requests counted by one statistic of v2/models/stats (cumulative)"),
    ("model_stat_duration_ns", "ns", "none", "time summed by one statistic of v2/models/stats (cumulative)"),
    ("model_batch_count", "count", "none", "executions of one batch size in one phase (cumulative)"),
    ("model_batch_duration_ns", "ns", "none", "time of one batch size in one phase (cumulative)"),
    ("model_memory_usage_bytes", "bytes", "none", "memory a model took at load time (Triton's memory tracker)"),
))

#: Source ``shm`` (:mod:`rmt.collect.shm`): the python backend's shared-memory regions, in the order a read has them.
SHM = table("shm", (
    ("shm_regions_count", "count", "none", "python-backend shared-memory regions in /dev/shm"),
    ("shm_size_bytes", "bytes", "lower", "apparent size of those regions (st_size summed)"),
    ("shm_allocated_bytes", "bytes", "lower", "memory those regions really hold (st_blocks*512)"),
))

#: The load generator's window fields (:class:`rmt.core.windows.LoadWindow`), as ``load.<field>``.
LOAD = table("rmt.load", ((f"load.{name}", unit, better, doc) for name, unit, better, doc in (
    ("sent", "count", "none", "requests sent per window and stream"),
    ("succeeded", "count", "higher", "requests answered without error"),
    ("inferences", "count", "higher", "batch rows of succeeded requests"),
    ("failed_timeout", "count", "lower", "requests Triton rejected when their queue timeout expired"),
    ("failed_rejected", "count", "lower", "requests Triton rejected because the queue was full"),
    ("failed_server", "count", "lower", "other error replies from Triton"),
    ("failed_client", "count", "lower", "requests without a reply (connection or client timeout)"),
    ("dropped_cap", "count", "lower", "open-loop arrivals dropped by the client's in-flight cap"),
    ("delayed_cap", "count", "lower", "open-loop arrivals sent late because of the in-flight cap"),
    ("in_flight", "count", "none", "requests outstanding at the window's end"),
    ("in_flight_max", "count", "none", "largest in-flight count during the window (sum over processes)"),
    ("latency_us", "us", "lower", "latency from the intended send time (coordinated-omission-correct)"),
    ("service_us", "us", "lower", "service time from the actual send"),
    ("cancelled", "count", "none", "streaming requests cancelled by the client on purpose"),
    ("responses", "count", "higher", "data responses of streaming requests"),
    ("finals", "count", "none", "streaming requests whose final flag arrived"),
    ("completed_responses", "count", "none", "data responses of completed streaming requests"),
    ("gap_us", "us", "lower", "gaps between consecutive responses of a streaming request"),
)))

#: Every recorded measure, by name.
MEASURES: dict[str, Measure] = merge(NVML, PROCESS, TRITON_METRICS, MODEL_STATS, SHM, LOAD)
