"""Collector pieces without a server: the sampling loop, gaps, parsers, NVML (absent for real, and a fake GPU)."""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from rmt.collect.core import Collector
from rmt.collect.gpu import NvmlSource
from rmt.collect.model_stats import parse_model_stats
from rmt.collect.nvml import Nvml
from rmt.collect.series import Point, Reading, labels_of
from rmt.collect.shm import ShmSource
from rmt.collect.source import SourceInfo
from rmt.collect.target import ServerTarget
from rmt.collect.triton_metrics import TRITON_METRICS, MetricsParser
from rmt.core.errors import ConfigError, SourceUnavailable
from rmt.core.measures import MEASURES
from rmt.core.rundir import FILES, RunDir
from rmt.core.samples import SAMPLES_FILE, SERIES_FILE, find_series, load_series
from tests.zoo_client import wait_for

TRITON_TEXT = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="leak_host",version="1"} 40
nv_inference_request_failure{model="leak_host",reason="BACKEND",version="1"} 2
nv_inference_count{model="leak_host",version="1"} 41
nv_inference_queue_duration_us{model="leak_host",version="1"} 1234
nv_pinned_memory_pool_used_bytes 0
nv_pinned_memory_pool_total_bytes 268435456
nv_gpu_memory_used_bytes{gpu_uuid="GPU-1"} 1.5e9
nv_cache_num_hits_per_model{model="x",version="1"} 3
"""


class CountingSource:
    """A source under the test's control: counts reads, can fail, block or hang."""

    def __init__(self, name: str, *, timeout_s: float = 1.0) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.reads = 0
        self.fail: str | None = None
        self.block = threading.Event()
        self.block.set()
        self.sleep_s = 0.0

    def open(self) -> SourceInfo:
        return SourceInfo()

    def read(self) -> Reading:
        self.block.wait()
        if self.sleep_s:
            time.sleep(self.sleep_s)
        self.reads += 1
        if self.fail:
            raise SourceUnavailable(self.fail)
        return Reading([Point("process_rss_bytes", labels_of(pid=1, name=self.name), float(self.reads))])

    def close(self) -> None:
        self.block.set()


def records(run: RunDir, source: str) -> list[dict[str, Any]]:
    run.flush()
    return [r for r in run.read(SAMPLES_FILE) if r["source"] == source]


def test_files_are_registered_with_documented_records() -> None:
    assert FILES[SAMPLES_FILE].record == "rmt.core.samples.SampleRecord"
    assert FILES[SERIES_FILE].record == "rmt.core.samples.SeriesRecord"


def test_every_triton_metric_kept_is_registered() -> None:
    points = MetricsParser().parse(TRITON_TEXT)
    assert {p.measure for p in points} <= set(MEASURES)
    assert all(MEASURES[name].source == "triton_metrics" for name in TRITON_METRICS)


def test_parser_keeps_raw_counters_and_labels() -> None:
    parser = MetricsParser()
    for _ in range(2):  # the second pass comes from the cache
        points = {(p.measure, p.labels): p.value for p in parser.parse(TRITON_TEXT)}
        assert points[("nv_inference_request_success", labels_of(model="leak_host", version="1"))] == 40
        assert points[("nv_inference_request_failure",
                       labels_of(model="leak_host", reason="BACKEND", version="1"))] == 2
        assert points[("nv_gpu_memory_used_bytes", labels_of(gpu_uuid="GPU-1"))] == 1.5e9
        assert points[("nv_cache_num_hits_per_model", labels_of(model="x", version="1"))] == 3


@pytest.mark.parametrize("text", ["<html><body>hello</body></html>", 'nv_inference_count{model="a" 3',
                                  'nv_inference_count{model="a"} x', "nv_inference_count"])
def test_malformed_metrics_are_a_gap_reason(text: str) -> None:
    with pytest.raises(SourceUnavailable, match="malformed"):
        MetricsParser().parse(text)


def test_loop_is_drift_free_and_records_monotonic_and_epoch_time(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    src = CountingSource("a")
    with Collector([src], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["a"].samples_total >= 20, 20, "20 samples")
    rows = records(run, "a")
    start = col.start_mono_ns
    for r in rows:
        assert r["t_mono_ns"] >= start + r["tick"] * 50_000_000  # never before its tick
        assert r["t_epoch_ns"] > 1_600_000_000 * 10**9
    ticks = [r["tick"] for r in rows]
    assert ticks == list(range(len(ticks)))  # one record per tick: no tick lost, none twice
    late = [r["t_mono_ns"] - (start + r["tick"] * 50_000_000) for r in rows]
    assert sorted(late)[len(late) // 2] < 25_000_000  # the median read starts well within its tick


def test_failed_read_is_a_gap_with_reason_never_zero(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    src = CountingSource("a")
    with Collector([src], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["a"].samples_total >= 3, 20, 'col.status["a"].samples_total >= 3')
        src.fail = "server gone: connection refused"
        wait_for(lambda: col.status["a"].errors_total >= 3, 20, 'col.status["a"].errors_total >= 3')
        src.fail = None
        errors = col.status["a"].errors_total
        wait_for(lambda: col.status["a"].samples_total >= 6 + errors, 20, "the source to resume")
    rows = records(run, "a")
    gaps = [r for r in rows if not r["ok"]]
    assert gaps and all(r["error"] == "server gone: connection refused" for r in gaps)
    assert all(list(r["values"].values()) == [None] for r in gaps)  # null (NaN), not 0
    assert rows[-1]["ok"]  # resumed
    series = find_series(load_series(run), "process_rss_bytes")
    assert len(series) == 1 and int(np.isnan(series[0].values).sum()) == len(gaps)


def test_slow_source_never_stalls_the_others_and_overruns_become_gaps(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    fast, slow = CountingSource("fast"), CountingSource("slow", timeout_s=0.2)
    with Collector([fast, slow], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["slow"].samples_total >= 2, 20, 'col.status["slow"].samples_total >= 2')
        slow.block.clear()  # the slow source hangs in its read
        before = fast.reads
        wait_for(lambda: fast.reads >= before + 20, 20, "the fast source to go on")
        slow.block.set()
        wait_for(lambda: col.status["slow"].errors_total >= 2, 20, "the hang recorded as gaps")
    slow_rows = records(run, "slow")
    reasons = {r["error"].split(":")[0] for r in slow_rows if not r["ok"]}
    assert {"timeout", "skipped"} <= reasons
    assert [r["tick"] for r in slow_rows] == list(range(len(slow_rows)))  # the time axis stays complete


def test_undeclared_measure_is_a_gap_not_a_crash(tmp_path: Path) -> None:
    class Rogue(CountingSource):
        def read(self) -> Reading:
            return Reading([Point("not_a_declared_measure_bytes", (), 1.0)])

    with Collector([Rogue("rogue")], run_dir=RunDir(tmp_path), interval_s=0.05) as col:
        wait_for(lambda: col.status["rogue"].errors_total >= 1, 20, 'col.status["rogue"].errors_total >= 1')
    assert "is not in rmt.core.measures" in col.status["rogue"].last_error


def test_bad_interval_and_duplicate_sources_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="interval"):
        Collector([], interval_s=0)
    with pytest.raises(ConfigError, match="twice"):
        Collector([CountingSource("a"), CountingSource("a")])


# -- NVML --------------------------------------------------------------------------------------------------
def test_nvml_absent_here_is_one_reason_and_the_rest_works(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    nvml = Nvml()
    if nvml.init():
        pytest.skip("this host has a GPU: the absent-NVML path is tested on CPU-only machines")
    assert "NVML" in nvml.reason and "\n" not in nvml.reason
    run = RunDir(tmp_path)
    target = ServerTarget(pid_provider=os.getpid)
    caplog.set_level("INFO")
    with Collector([NvmlSource(target, nvml=nvml), CountingSource("a")], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["a"].samples_total >= 3, 20, 'col.status["a"].samples_total >= 3')
    assert [r.message for r in caplog.records if "nvml" in r.message].__len__() == 1
    manifest = run.manifest()
    assert manifest["nvml"]["available"] is False and manifest["gpus"] == []
    assert manifest["collector"]["sources"]["nvml"]["available"] is False
    assert not records(run, "nvml")  # no rows at all, rather than zeros


class FakeNvmlLib:
    """The NVML calls rmt makes, for one GPU that does not exist here (the only fake: there is no GPU)."""

    class NVMLError(Exception):
        pass

    nvmlMemory_v2 = 0x02000028

    def __init__(self, procs: list[tuple[int, int | None]], *, v2: bool = True) -> None:
        self.procs = procs
        self.v2 = v2
        self.used = 1_000_000_000
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"h{index}"

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, handle: str) -> str:
        return "GPU-0000"

    def nvmlDeviceGetMemoryInfo(self, handle: str, version: int | None = None) -> SimpleNamespace:
        total = 80 * 2**30
        if version is not None:
            if not self.v2:
                raise self.NVMLError("Function Not Found")
            return SimpleNamespace(total=total, used=self.used, free=total - self.used - 5, reserved=5)
        return SimpleNamespace(total=total, used=self.used, free=total - self.used)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(gpu=42, memory=7)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in self.procs]

    def nvmlSystemGetDriverVersion(self) -> str:
        return "550.54.15"

    def nvmlSystemGetNVMLVersion(self) -> str:
        return "12.550.54.15"


@pytest.mark.parametrize("v2", [True, False])
def test_nvml_series_and_per_process_attribution(v2: bool) -> None:
    me = os.getpid()  # this process plays the server: the tree is real, only the GPU is fake
    lib = FakeNvmlLib([(me, 8 * 2**20), (999_999_999, 3 * 2**20), (999_999_998, None)], v2=v2)
    source = NvmlSource(ServerTarget(pid_provider=os.getpid), nvml=Nvml(lib))
    info = source.open()
    assert info.available
    assert info.manifest["gpus"] == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-0000",
                                      "memory_api": "v2" if v2 else "v1"}]
    assert info.manifest["nvml"]["driver_version"] == "550.54.15"
    points = source.read().points
    assert {p.measure for p in points} <= set(MEASURES)
    by = {(p.measure, p.labels): p.value for p in points}
    gpu = labels_of(gpu=0, uuid="GPU-0000")
    assert by[("gpu_memory_used_bytes", gpu)] == 1e9
    assert math.isnan(by[("gpu_memory_reserved_bytes", gpu)]) != v2  # v1 has no reserved: NaN, not 0
    mine = [p for p in points if p.measure == "gpu_process_memory_bytes"]
    assert len(mine) == 1 and dict(mine[0].labels)["pid"] == str(me) and mine[0].value == 8 * 2**20
    assert dict(mine[0].labels)["name"] == "tritonserver" and dict(mine[0].labels)["gpu"] == "0"
    assert by[("gpu_tree_memory_bytes", gpu)] == 8 * 2**20
    assert by[("gpu_other_processes_memory_bytes", gpu)] == 3 * 2**20
    source.close()
    assert lib.shutdowns == 1


def test_nvml_read_error_is_a_gap() -> None:
    lib = FakeNvmlLib([])
    source = NvmlSource(None, nvml=Nvml(lib))
    assert source.open().available

    def broken(handle: str) -> None:
        raise lib.NVMLError("GPU is lost")

    lib.nvmlDeviceGetComputeRunningProcesses = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(SourceUnavailable, match="GPU is lost"):
        source.read()


def test_model_stats_parse_and_malformed_answer() -> None:
    payload = {"model_stats": [{"name": "probe", "version": "1", "inference_count": 2, "execution_count": 1,
                                "inference_stats": {"success": {"count": 1, "ns": 35}},
                                "batch_stats": [{"batch_size": 2, "compute_infer": {"count": 1, "ns": 34}}],
                                "memory_usage": [{"type": "CPU", "id": 0, "byte_size": 4096}]}]}
    points = {(p.measure, p.labels): p.value for p in parse_model_stats(payload)}
    assert {m for m, _ in points} <= set(MEASURES)
    assert points[("model_batch_count", labels_of(model="probe", version="1", batch_size=2,
                                                  phase="compute_infer"))] == 1
    assert points[("model_memory_usage_bytes", labels_of(model="probe", version="1", type="CPU", id=0))] == 4096
    with pytest.raises(SourceUnavailable, match="not Triton's model statistics"):
        parse_model_stats({"error": "no"})


def test_nvml_is_read_at_its_own_cadence_and_rmt_collect_sets_both_cadences(tmp_path: Path) -> None:
    from rmt.collect.sidecar import Sidecar, SidecarOptions, build_sources
    from rmt.commands.collect import options_from_args

    assert SidecarOptions().nvml_every_s == 0.5  # the default: its docstring says what it costs and loses
    with pytest.raises(ConfigError, match="--nvml-every"):
        SidecarOptions(nvml_every_s=-1).validate()
    me = os.getpid()
    options = SidecarOptions(interval_s=0.05, port=None, sources=["nvml"], nvml_every_s=0.2)
    run = RunDir(tmp_path)
    with Sidecar(ServerTarget(pid_provider=os.getpid), run, options, nvml=Nvml(FakeNvmlLib([(me, 2**20)]))) as car:
        wait_for(lambda: car.collector.status["nvml"].samples_total >= 4, 20, "four NVML reads")
    assert run.manifest()["collector"]["sources"]["nvml"]["every_s"] == pytest.approx(0.2)
    ticks = [r["tick"] for r in records(run, "nvml")]
    assert len(ticks) >= 4 and ticks == list(range(0, 4 * len(ticks), 4))  # every 4th tick, no gap rows between
    args = SimpleNamespace(pid=me, server_url=None, duration=None, interval=0.1, timeout=1.0, sources="nvml,shm",
                           detail_every=1.0, uss_every=30.0, metrics_every=0.1, nvml_every=2.0, shm_every=0.3,
                           host="127.0.0.1", port=0, no_api=True)
    cli = options_from_args(args)
    assert (cli.metrics_every_s, cli.nvml_every_s, cli.shm_every_s) == (0.1, 2.0, 0.3)
    shm = build_sources(ServerTarget(pid_provider=os.getpid), cli)[1]
    assert isinstance(shm, ShmSource) and shm.every_s == 0.3
    for flag in ("nvml_every", "shm_every"):
        with pytest.raises(ConfigError, match="--" + flag.replace("_", "-")):
            options_from_args(SimpleNamespace(**{**vars(args), flag: 0}))
