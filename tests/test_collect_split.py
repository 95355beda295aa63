"""One wake-up per tick: split sources (a request sent at the tick, the answer taken without waiting) sharing the
sampling thread with the inline ones, layouts instead of points, the shm listing kept while the folder is unchanged,
and samples encoded as ``json.dumps`` would."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rmt.collect.core import Collector
from rmt.collect.http_get import HttpGetter
from rmt.collect.process_tree import ProcessTreeSource
from rmt.collect.series import Point, Reading, SampleEncoder, labels_of
from rmt.collect.shm import ShmSource
from rmt.collect.sidecar import Sidecar, SidecarOptions
from rmt.collect.source import SourceInfo
from rmt.collect.target import ServerTarget
from rmt.core.errors import ConfigError, SourceUnavailable
from rmt.core.rundir import RunDir, json_safe
from rmt.core.samples import SAMPLES_FILE, SERIES_FILE, SampleRecord
from tests.test_collect_overhead import pages  # noqa: F401  (fixture)
from tests.zoo_client import wait_for


class Inline:
    """An inline source that records when it was read."""

    inline = True
    timeout_s = 1.0

    def __init__(self, name: str = "inline") -> None:
        self.name = name
        self.thread = ""

    def open(self) -> SourceInfo:
        return SourceInfo()

    def read(self) -> Reading:
        self.thread = threading.current_thread().name
        return Reading([Point("process_rss_bytes", labels_of(pid=1, name=self.name), 1.0)])

    def close(self) -> None:
        pass


class Split:
    """A split source whose answer comes ``delay_s`` after its request (or never, while ``hang``)."""

    split = True

    def __init__(self, name: str = "split", *, delay_s: float = 0.0, timeout_s: float = 1.0,
                 every_s: float = 0.0) -> None:
        self.name = name
        self.every_s = every_s
        self.delay_s = delay_s
        self.timeout_s = timeout_s
        self.hang = False
        self.sent: float | None = None
        self.begun = 0
        self.cancelled = 0
        self.thread = ""

    def open(self) -> SourceInfo:
        return SourceInfo()

    def read(self) -> Reading:
        raise AssertionError("a split source in the shared thread is never read whole")

    def begin(self) -> None:
        self.thread = threading.current_thread().name
        self.begun += 1
        self.sent = time.monotonic()

    def poll(self) -> Reading | None:
        assert self.sent is not None
        if self.hang or time.monotonic() - self.sent < self.delay_s:
            return None
        return Reading([Point("nv_inference_count", labels_of(model=self.name), float(self.begun))])

    def wait(self, timeout_s: float) -> None:
        assert self.sent is not None
        time.sleep(max(0.0, min(timeout_s, self.sent + self.delay_s - time.monotonic())))

    def cancel(self) -> None:
        self.cancelled += 1

    def close(self) -> None:
        pass


def rows_of(run: RunDir, source: str) -> list[dict[str, Any]]:
    run.flush()
    return [r for r in run.read(SAMPLES_FILE) if r["source"] == source]


def test_split_answer_is_taken_at_a_later_tick_without_a_wake_up_or_a_lost_tick(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    inline, split = Inline(), Split(delay_s=0.06)  # the answer comes after the end of its tick (50 ms)
    with Collector([inline, split], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["split"].samples_total >= 10, 20, "answers")
    assert inline.thread == split.thread == "rmt-sample-inline+split"  # one thread, begun first
    start = col.start_mono_ns
    rows = rows_of(run, "split")
    assert [r["tick"] for r in rows] == list(range(len(rows)))
    good = [r for r in rows if r["ok"]]
    assert len(good) >= len(rows) // 2  # a request every other tick: the answer overran its own tick
    for r in good:  # the request's time, not the answer's; the answer taken at a later tick
        assert 0 <= r["t_mono_ns"] - (start + r["tick"] * 50_000_000) < 25_000_000
        assert 60_000 <= r["duration_us"] <= 150_000
    assert {r["error"].split(":")[0] for r in rows if not r["ok"]} <= {"skipped"}
    inline_rows = rows_of(run, "inline")
    assert all(r["ok"] for r in inline_rows) and [r["tick"] for r in inline_rows] == list(range(len(inline_rows)))


def test_split_answer_there_at_the_end_of_its_tick_is_taken_in_that_tick(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with Collector([Inline(), Split()], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["split"].samples_total >= 10, 20, "answers")
    rows = rows_of(run, "split")
    assert all(r["ok"] for r in rows) and [r["tick"] for r in rows] == list(range(len(rows)))
    assert sorted(r["duration_us"] for r in rows)[len(rows) // 2] < 10_000  # not a tick later


def test_hung_split_source_times_out_and_never_delays_the_inline_ones(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    inline, split = Inline(), Split(timeout_s=0.2)
    with Collector([inline, split], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["split"].samples_total >= 3, 20, "answers")
        split.hang = True
        wait_for(lambda: col.status["split"].errors_total >= 6, 20, "the hang recorded as gaps")
        split.hang = False
        errors = col.status["split"].errors_total
        wait_for(lambda: col.status["split"].samples_total >= 3 + errors, 20, "answers again")
    rows = rows_of(run, "split")
    assert [r["tick"] for r in rows] == list(range(len(rows)))
    reasons = [r["error"].split(":")[0] for r in rows if not r["ok"]]
    assert "timeout" in reasons and "skipped" in reasons and split.cancelled >= 1
    inline_rows = rows_of(run, "inline")  # read at every tick while the split source hung
    assert all(r["ok"] for r in inline_rows) and [r["tick"] for r in inline_rows] == list(range(len(inline_rows)))
    assert max(r["jitter_us"] for r in inline_rows) < 40_000


def test_split_timeout_shorter_than_the_interval_is_decided_within_the_tick(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    fast, slow = Split("fast", delay_s=0.02, timeout_s=0.05), Split("slow", delay_s=0.08, timeout_s=0.05)
    with Collector([Inline(), fast, slow], run_dir=run, interval_s=0.2) as col:
        wait_for(lambda: col.status["fast"].samples_total >= 3 and col.status["slow"].errors_total >= 3, 20, "reads")
    fast_rows, slow_rows = rows_of(run, "fast"), rows_of(run, "slow")
    assert all(r["ok"] and 20_000 <= r["duration_us"] < 50_000 for r in fast_rows)  # waited for, not a tick later
    assert all(not r["ok"] and r["error"].startswith("timeout") for r in slow_rows)
    assert [r["tick"] for r in slow_rows] == list(range(len(slow_rows)))  # decided at once: no tick skipped


def test_stop_takes_the_answer_on_its_way(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    split = Split(delay_s=0.3)
    col = Collector([split], run_dir=run, interval_s=1.0).start()
    wait_for(lambda: split.begun >= 1, 20, "the first request")
    col.stop()
    rows = rows_of(run, "split")
    assert [(r["tick"], r["ok"]) for r in rows] == [(0, True)]


def test_split_source_that_cannot_send_is_a_gap_at_once(tmp_path: Path) -> None:
    class Refused(Split):
        def begin(self) -> None:
            raise SourceUnavailable("GET http://127.0.0.1:9/metrics failed: Connection refused")

    run = RunDir(tmp_path)
    with Collector([Refused()], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["split"].errors_total >= 3, 20, "gaps")
    rows = rows_of(run, "split")
    assert rows and all(not r["ok"] and "refused" in r["error"] for r in rows)
    assert [r["tick"] for r in rows] == list(range(len(rows)))


# -- the HTTP client's non-blocking GET --------------------------------------------------------------------------
def test_pending_get_never_blocks_and_takes_the_answer_once_there(pages: str) -> None:  # noqa: F811
    http = HttpGetter()
    try:
        started = time.monotonic()
        pending = http.start(f"{pages}/slow")  # the server answers after 1 s
        assert pending.poll() is None
        assert time.monotonic() - started < 0.5  # sent, not waited for
        wait_for(lambda: pending.wait(0.05) and pending.poll() == b"x", 10, "the slow answer")
        assert http.get(f"{pages}/page", 5) == b"/page" * 4000  # the connection was handed back
        cancelled = http.start(f"{pages}/slow")
        cancelled.cancel()
        with pytest.raises(SourceUnavailable, match="after it ended"):
            cancelled.poll()
        assert http.get(f"{pages}/page", 5) == b"/page" * 4000  # a new connection after the cancelled one
    finally:
        http.close()


# -- layouts -----------------------------------------------------------------------------------------------------
def test_process_source_reuses_its_layout_and_values_stay_right() -> None:
    target = ServerTarget(pid_provider=os.getpid)  # this process plays the server
    source = ProcessTreeSource(target, detail_every_s=3600, uss_every_s=3600)
    source.open()
    try:
        first = source.read()  # the first read has the details (and asks for USS)
        wait_for(lambda: any(p.measure == "process_uss_bytes" for p in source.read().points), 10, "the USS round")
        plain = [source.read() for _ in range(3)]
        assert first.layout is not None and first.layout is not plain[0].layout
        assert plain[0].layout is plain[1].layout is plain[2].layout  # one list while the tree is the same
        ballast = bytearray(64 * 2**20)
        ballast[::4096] = b"x" * len(ballast[::4096])
        grown = source.read()
        assert grown.layout is plain[0].layout
        me = str(os.getpid())  # (a server fixture's tritonserver may be a child of this process)
        rss = {p.measure: p.value for p in grown.points if dict(p.labels).get("pid") == me}
        before = {p.measure: p.value for p in plain[2].points if dict(p.labels).get("pid") == me}
        assert rss["process_rss_bytes"] >= before["process_rss_bytes"] + 60 * 2**20
        assert {p.measure for p in first.points} >= {"process_threads_count", "process_open_fds_count",
                                                     "process_cpu_s", "process_tree_rss_bytes"}
        assert all(not math.isnan(p.value) for p in first.points)
        del ballast
    finally:
        source.close()


def test_collector_looks_layout_ids_up_once_and_writes_each_ticks_values(tmp_path: Path) -> None:
    class Layouted(Inline):
        def __init__(self) -> None:
            super().__init__("layouted")
            self.layout = [Point("process_rss_bytes", labels_of(pid=n, name="x"), math.nan) for n in (1, 2)]
            self.reads = 0

        def read(self) -> Reading:
            self.reads += 1
            return Reading(layout=self.layout, values=[float(self.reads), math.nan])

    run = RunDir(tmp_path)
    with Collector([Layouted()], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["layouted"].samples_total >= 5, 20, "samples")
    assert len(list(run.read(SERIES_FILE))) == 2  # declared once
    rows = rows_of(run, "layouted")
    assert [r["values"] for r in rows[:3]] == [{"1": 1.0, "2": None}, {"1": 2.0, "2": None}, {"1": 3.0, "2": None}]
    with pytest.raises(ValueError, match="layout"):
        Reading(layout=[], values=[1.0])


# -- shm ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A folder on tmpfs (``/dev/shm``) where it exists, as the python backend's regions are."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = Path(tempfile.mkdtemp(prefix="rmt-test-shm-", dir=base))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("settle_ns", [0, 10**9])
def test_shm_source_follows_regions_created_grown_and_removed(shm_dir: Path, settle_ns: int,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rmt.collect.shm.SETTLE_NS", settle_ns)  # 0: only the folder's signature says "changed"
    source = ShmSource(ServerTarget(pid_provider=lambda: None, shm_prefix="region_"), shm_dir=shm_dir)
    assert source.open().available

    def read() -> tuple[float, float, float]:
        values = {p.measure: p.value for p in source.read().points}
        return values["shm_regions_count"], values["shm_size_bytes"], values["shm_allocated_bytes"]

    try:
        assert read() == (0, 0, 0)
        (shm_dir / "region_a").write_bytes(b"a" * 8192)
        (shm_dir / "another_server_region").write_bytes(b"x" * 4096)
        assert read() == (1, 8192, 8192)
        with open(shm_dir / "region_a", "ab") as fh:  # grows: the folder does not change
            fh.write(b"a" * 8192)
        assert read() == (1, 16384, 16384)
        for _ in range(3):
            assert read() == (1, 16384, 16384)  # the listing kept
        (shm_dir / "region_b").write_bytes(b"")
        assert read() == (2, 16384, 16384)
        os.unlink(shm_dir / "region_a")
        assert read() == (1, 0, 0)
    finally:
        source.close()


# -- encoding ----------------------------------------------------------------------------------------------------
def test_sample_lines_are_what_json_dumps_writes_and_shared_values_are_encoded_once() -> None:
    values: dict[str, float | None] = {"1": 1.5, "2": None, "3": math.nan, "4": math.inf, "5": 1e300, "6": -0.0}
    records = [SampleRecord("local", 1, "s", 0, 10, 20, 1.25, math.nan, True, 'a "quoted" NaN note', values),
               SampleRecord("local", 2, "s", 1, 11, 21, 0.5, 3.0, True, None, values),
               SampleRecord("http://h:1", 3, "t", 0, 12, 22, -1.0, math.inf, False, "gap", {"7": None})]
    encoder = SampleEncoder()
    for rec in records:
        expected = json.dumps(json_safe(rec.to_json()), separators=(",", ":"))
        assert encoder.line(rec) == expected
        assert json.loads(encoder.line(rec)) == json.loads(expected)
    values["1"] = 99.0  # never done by the collector: shows that the shared dict's JSON was reused
    assert '"1":1.5' in encoder.line(records[1])


# -- cadence -----------------------------------------------------------------------------------------------------
def test_source_with_a_longer_cadence_is_read_at_its_ticks_only_without_gaps(tmp_path: Path) -> None:
    class Own(Inline):  # a source with a thread of its own
        inline = False
        every_s = 0.1

    run = RunDir(tmp_path)
    split = Split(every_s=0.15)
    with Collector([Inline(), split, Own("own")], run_dir=run, interval_s=0.05) as col:
        wait_for(lambda: col.status["split"].samples_total >= 5 and col.status["own"].samples_total >= 5, 20, "reads")
    sources = col.manifest()["sources"]
    assert (sources["inline"]["every_s"], sources["split"]["every_s"], sources["own"]["every_s"]) == (
        0.05, pytest.approx(0.15), 0.1)
    for name, every in (("inline", 1), ("split", 3), ("own", 2)):
        rows = rows_of(run, name)
        assert all(r["ok"] for r in rows), name  # the ticks in between are not gaps: there is no record
        assert [r["tick"] for r in rows] == list(range(0, every * len(rows), every)), name
        start = col.start_mono_ns
        assert all(0 <= r["t_mono_ns"] - (start + r["tick"] * 50_000_000) < 25_000_000 for r in rows), name


def test_sidecar_reads_triton_metrics_at_its_own_cadence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--metrics-every"):
        SidecarOptions(metrics_every_s=0).validate()
    options = SidecarOptions(interval_s=0.05, port=None, sources=["triton_metrics", "shm"], metrics_every_s=0.2)
    assert SidecarOptions().metrics_every_s == 0.5  # the default: see its docstring for what it costs and loses
    run = RunDir(tmp_path)
    with Sidecar(ServerTarget(metrics_url="http://127.0.0.1:9/metrics", shm_prefix="none_"), run, options) as car:
        wait_for(lambda: car.collector.status["triton_metrics"].errors_total >= 3, 20, "reads (refused: gaps)")
    assert run.manifest()["collector"]["sources"]["triton_metrics"]["every_s"] == pytest.approx(0.2)
    ticks = [r["tick"] for r in rows_of(run, "triton_metrics")]
    assert ticks == list(range(0, 4 * len(ticks), 4))
