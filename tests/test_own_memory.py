"""rmt's own memory in a soak: what the Locust master and workers keep per window stays bounded, whatever the run
length (docs/reliability.md, "rmt's own memory"). Counts of live objects, not timings or RSS.

The cause found there: a histogram of hdrh and its encoder refer to each other, so each window's histograms
(168 KiB of counters each) waited for a full collection of the cyclic GC, which came ever more seldom; the master's
and the workers' RSS kept rising. These tests run with the cyclic GC off: a histogram that is not freed by
refcounting alone stays alive and is counted.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from rmt.collect.core import Collector
from rmt.collect.series import Point, Reading, labels_of
from rmt.collect.source import SourceInfo
from rmt.core.hdr import encode_histogram, new_histogram
from rmt.core.rundir import RunDir
from rmt.core.windows import NS_PER_S, WindowState
from rmt.load.plugin import TritonTraffic, _wire_windows
from rmt.load.windows import WindowBook

STREAMS = ("m0/p0/default", "m1/p0/default", "m2/p0/default")


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def live_histograms() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, HdrHistogram))


def test_a_histogram_is_freed_by_refcounting_alone(no_cyclic_gc: None) -> None:
    hist = new_histogram()
    hist.record_value(1500)
    assert encode_histogram(hist)  # the encoder still reaches its histogram while it lives
    ref = weakref.ref(hist)
    del hist
    assert ref() is None


def _window(sent: int, latency_us: int) -> dict[str, Any]:
    state = WindowState()
    state.counts[0] = state.counts[1] = state.counts[2] = sent
    for _ in range(sent):
        state.latency.record_value(latency_us)
        state.service.record_value(latency_us)
    return state.to_wire()


def _merge(seconds: int, tmp: Path) -> tuple[TritonTraffic, int]:
    """Two workers' reports of ``seconds`` seconds × 3 streams through the master's ``worker_report`` listener;
    returns the coordinator and how many more histograms are alive than before."""
    before = live_histograms()
    traffic = TritonTraffic(run_dir=tmp)
    traffic.run_dir = RunDir(tmp)
    traffic._watermarks = {"w0": 0.0, "w1": 0.0}  # as test_start sets them on a master
    t0 = 1_700_000_000 * NS_PER_S
    for sec in range(seconds):
        ns = t0 + sec * NS_PER_S
        for w, worker in enumerate(traffic._watermarks.copy()):
            windows = [[[ns, "http", stream, "steady"], _window(3 + w, 1000 + 100 * s)]
                       for s, stream in enumerate(STREAMS)]
            traffic._on_worker_report(worker, {"rmt": {"windows": windows, "traces": [], "failures": [],
                                                       "upto": ns + NS_PER_S}})
    return traffic, live_histograms() - before


def test_the_master_keeps_no_window_once_written(tmp_path: Path, no_cyclic_gc: None) -> None:
    short, alive_short = _merge(20, tmp_path / "short")
    long, alive_long = _merge(200, tmp_path / "long")
    for traffic, seconds in ((short, 20), (long, 200)):
        assert traffic.run_dir is not None
        traffic.run_dir.close()
        assert len((traffic.run_dir.path / "windows.jsonl").read_text().splitlines()) == seconds * 3
        assert traffic.totals["sent"] == seconds * 3 * (3 + 4)
        assert len(traffic.pending) == 0  # every worker reported past every second: all written, none kept
    assert alive_short == alive_long == 0


def test_a_worker_keeps_only_its_open_windows(no_cyclic_gc: None) -> None:
    book = WindowBook()
    before = live_histograms()
    t0 = 1_700_000_000 * NS_PER_S
    for sec in range(300):
        for s, stream in enumerate(STREAMS):
            skey = ("http", stream, "steady")
            for i in range(4):
                now = t0 + sec * NS_PER_S + i * NS_PER_S // 4
                book.on_sent(skey, now)
                book.on_done(skey, 0, 1, 1000.0 + s, 900.0, now)
        assert _wire_windows(book.close(t0 + (sec + 1) * NS_PER_S))  # what report_to_master ships
    assert live_histograms() - before == 0


class _Every:
    """A source read at every ``every_s`` (what the collector sizes its history by)."""

    inline = True

    def __init__(self, name: str, every_s: float) -> None:
        self.name, self.every_s, self.timeout_s = name, every_s, 1.0

    def open(self) -> SourceInfo:
        return SourceInfo(True)

    def read(self) -> Reading:
        return Reading([Point("process_rss_bytes", labels_of(pid=1), 1.0)])

    def close(self) -> None:
        pass


def test_the_collector_history_holds_its_seconds_of_each_source_not_more() -> None:
    collector = Collector([_Every("process", 0.0), _Every("shm", 0.5), _Every("nvml", 0.5)], interval_s=0.1,
                          history_s=60.0)
    assert collector._history.maxlen == 600 + 120 + 120  # 60 s at each source's cadence (was 3 × 600)
