"""Master scalability: worker windows merged per master CPU-second, and the master's memory, at N simulated workers.

    .venv/bin/python benchmarks/bench_master.py [--workers 500] [--streams 20] [--seconds 10] [--rate 25]

Each simulated worker runs ``--streams`` streams and sends one report per second carrying the 1-second window of
each stream (``WindowState.to_wire``: counts and two µs HDR histograms of ``--rate`` requests), inside a Locust
``Message("stats", …)`` serialized by Locust's own msgpack protocol — the bytes a real worker puts on the wire.
The master's part is timed with ``time.process_time`` (one thread): ``Message.unserialize`` (Locust's receive
loop) and ``TritonTraffic._on_worker_report`` — the ``worker_report`` listener rmt registers on a master, which merges
each window into the pending state of its key and appends every window all workers reported past to
``windows.jsonl``. The reports are built before each simulated second, outside the timing (they are the workers'
cost). The watermarks start as ``test_start`` sets them on a master (every worker known, at 0).

Exactness: every (second, stream) is written once, by all workers (``processes``), with the sums of ``sent`` and
``succeeded`` and the histogram counts of what the workers sent; one merged histogram is compared counter by counter
with hdrh's own ``decode_and_add`` of the same blobs. Last line: ``windows_per_cpu_s=X workers_at_1s=Y
exact=True`` where ``workers_at_1s`` is how many workers of ``--streams`` streams one core merges in real time.
``--with-locust-stats`` adds Locust's own per-request-name stats entries to every report and Locust's master-side
listener that merges them (the whole master cost of a report, Locust's part included).
Figures: docs/benchmarks.md ("master").

``--memory`` measures what the master keeps instead of its speed (docs/reliability.md, "rmt's own memory")::

    .venv/bin/python benchmarks/bench_master.py --memory [--workers 2 --streams 3 --seconds 600] [--hdrh-cycle]

It merges ``--seconds`` simulated seconds (Locust's own stats included, their per-second keys moving with the
simulated clock as in a real run) under ``tracemalloc`` and prints what the master kept (traced growth after a full
collection) per 10 000 windows written, split into rmt's part, Locust's part and the rest; what it held at the end
before that collection (cyclic garbage included) and the glibc heap growth; and the most ``HdrHistogram`` objects
alive at once against the 3 per pending window key the merge needs. ``--hdrh-cycle`` builds histograms as hdrh does
(histogram and encoder referring to each other, freed only by the cyclic GC): the code before the fix.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from hdrh.histogram import HdrHistogram
from locust.event import Events
from locust.rpc.protocol import Message
from locust.stats import RequestStats, setup_distributed_stats_event_listeners

import rmt.core.windows
from rmt.core.hdr import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS, decode_histogram, new_histogram
from rmt.core.rundir import RunDir
from rmt.core.windows import NS_PER_S, WindowState
from rmt.load.plugin import TritonTraffic

POOL = 97
"""Distinct window states the simulated workers draw from (built once; which one a worker sends varies)."""


def window_pool(rate: int, seed: int = 7) -> list[dict[str, Any]]:
    """``POOL`` window states in wire form, each of ``rate`` requests with lognormal µs latencies."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(POOL):
        state = WindowState()
        n = max(1, int(rng.poisson(rate)))
        for lat in rng.lognormal(np.log(1500 + 40 * i), 0.6, n):
            state.latency.record_value(max(1, int(lat)))
            state.service.record_value(max(1, int(lat * 0.8)))
        state.counts[0] = n + int(i % 3 == 0)
        state.counts[1] = state.counts[2] = n
        state.in_flight = int(i % 3 == 0)
        state.in_flight_max = 2
        out.append(state.to_wire())
    return out


def locust_stats_pool(streams: int, rate: int, seed: int = 11) -> list[dict[str, Any]]:
    """``POOL`` of Locust's own worker stats reports (``stats``, ``stats_total``, ``errors``) for ``streams`` request
    names of ``rate`` requests each, as Locust's ``report_to_master`` listener serializes them on a worker."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(POOL):
        events, stats = Events(), RequestStats()
        setup_distributed_stats_event_listeners(events, stats)
        for s in range(streams):
            for lat in rng.lognormal(np.log(1.5), 0.6, rate):
                stats.log_request("rmt", f"model{s}/p0/default", max(1, round(lat)), 64)
        data: dict[str, Any] = {}
        events.report_to_master.fire(client_id="w", data=data)
        out.append(data)
    return out


def _at_second(own: dict[str, Any], second: int) -> dict[str, Any]:
    """A worker's Locust stats report moved to ``second`` (epoch s): its per-second request and failure counts keyed
    by that second, as a worker sends them in a real run (the master keeps one key per second of the run)."""
    def moved(entry: dict[str, Any]) -> dict[str, Any]:
        return {**entry, "num_reqs_per_sec": {second: sum(entry["num_reqs_per_sec"].values())},
                "num_fail_per_sec": {second: n} if (n := sum(entry["num_fail_per_sec"].values())) else {},
                "last_request_timestamp": second + 0.5, "start_time": float(second)}
    return {**own, "stats": [moved(e) for e in own["stats"]], "stats_total": moved(own["stats_total"])}


def reports(second_ns: int, workers: int, streams: int, pool: list[dict[str, Any]],
            locust_pool: list[dict[str, Any]] | None = None, *, move_locust: bool = False) -> list[bytes]:
    """One serialized Locust stats message per worker carrying its windows of the second at ``second_ns`` (and
    Locust's own stats entries when ``locust_pool`` is given; ``move_locust``: keyed by that second)."""
    k = second_ns // NS_PER_S
    out = []
    for w in range(workers):
        windows = [[[second_ns, "http", f"model{s}/p0/default", "steady"], pool[(w * 31 + s * 7 + k) % POOL]]
                   for s in range(streams)]
        own = locust_pool[(w + k) % POOL] if locust_pool else {"stats": [], "stats_total": {}, "errors": {}}
        if locust_pool and move_locust:
            own = _at_second(own, k)
        data = {**own, "user_count": 8, "user_classes_count": {},
                "rmt": {"windows": windows, "traces": [], "failures": [], "upto": second_ns + NS_PER_S}}
        out.append(Message("stats", data, f"worker-{w}").serialize())
    return out


def expected_totals(workers: int, streams: int, seconds: int, t0: int, pool: list[dict[str, Any]]
                    ) -> dict[tuple[int, str], tuple[int, int, int]]:
    """(second ns, stream) → (sent, succeeded, histogram count) summed over the workers."""
    out = {}
    for sec in range(seconds):
        k = (t0 + sec * NS_PER_S) // NS_PER_S
        for s in range(streams):
            parts = [pool[(w * 31 + s * 7 + k) % POOL] for w in range(workers)]
            out[(t0 + sec * NS_PER_S, f"model{s}/p0/default")] = (
                sum(p["c"][0] for p in parts), sum(p["c"][1] for p in parts),
                sum(decode_histogram(p["l"]).get_total_count() for p in parts))
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]


def _heap_bytes() -> int:
    """glibc's heap in use (``mallinfo2().uordblks``; 0 where there is no glibc 2.33+)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        return int(libc.mallinfo2().uordblks)
    except (OSError, AttributeError):
        return 0


def _part(stat: tracemalloc.StatisticDiff) -> str:
    """``rmt``, ``Locust`` or ``other``: the package of the innermost frame of either (an hdrh or msgpack allocation
    counts for the rmt or Locust code that asked for it)."""
    for frame in reversed(stat.traceback):  # innermost first (a traceback lists the oldest frame first)
        if "/rmt/" in frame.filename:
            return "rmt"
        if "/locust/" in frame.filename:
            return "Locust"
    return "other"


def memory(args: argparse.Namespace) -> None:
    """The ``--memory`` mode (see the module docstring)."""
    if args.hdrh_cycle:  # the factory as it was: hdrh's histogram <-> encoder cycle left in place
        def cyclic() -> HdrHistogram:
            return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        rmt.core.windows.new_histogram = cyclic
    pool = window_pool(args.rate)
    locust_pool = locust_stats_pool(args.streams, args.rate)
    events, locust_stats = Events(), RequestStats()
    setup_distributed_stats_event_listeners(events, locust_stats)
    t0 = (time.time_ns() // NS_PER_S) * NS_PER_S
    warm = 100
    peak_alive, peak_pending = 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        traffic = TritonTraffic(run_dir=tmp)
        traffic.run_dir = RunDir(Path(tmp))
        traffic._watermarks = {f"worker-{w}": 0.0 for w in range(args.workers)}
        events.worker_report.add_listener(traffic._on_worker_report)
        for sec in range(warm + args.seconds):
            if sec == warm:
                gc.collect()
                tracemalloc.start(6)
                before, heap0 = tracemalloc.take_snapshot(), _heap_bytes()
            for raw in reports(t0 + sec * NS_PER_S, args.workers, args.streams, pool, locust_pool, move_locust=True):
                msg = Message.unserialize(raw)
                events.worker_report.fire(client_id=msg.node_id, data=msg.data)
            if sec % 50 == 49:  # what is alive now, garbage the cyclic GC has not collected yet included
                peak_alive = max(peak_alive, sum(1 for o in gc.get_objects() if isinstance(o, HdrHistogram)))
                peak_pending = max(peak_pending, len(traffic.pending))
        held, heap1 = tracemalloc.take_snapshot(), _heap_bytes()  # what a running master holds, garbage included
        gc.collect()
        after = tracemalloc.take_snapshot()  # what it keeps
        tracemalloc.stop()
        traffic._flush()
        assert traffic.run_dir is not None
        traffic.run_dir.close()
    windows = args.seconds * args.streams
    per10k = 1e4 / windows
    parts = dict.fromkeys(("rmt", "Locust", "other"), 0)
    for stat in after.compare_to(before, "traceback"):
        parts[_part(stat)] += stat.size_diff
    total = sum(parts.values())
    garbage = sum(t.size for t in held.traces) - sum(t.size for t in after.traces)
    how = "hdrh cycle: before the fix" if args.hdrh_cycle else "histograms freed by refcounting"
    print(f"{args.workers} workers x {args.streams} streams x {args.seconds} s ({how}): {windows} windows written, "
          f"{locust_stats.total.num_requests} requests in Locust's totals")
    print(f"kept (traced growth after a full collection) per 10k windows: {total * per10k / 1024:+.0f} KiB "
          f"(rmt {parts['rmt'] * per10k / 1024:+.0f} KiB, Locust {parts['Locust'] * per10k / 1024:+.0f} KiB, other "
          f"{parts['other'] * per10k / 1024:+.0f} KiB)")
    print(f"held at the end, garbage waiting for the cyclic GC included: {(total + garbage) / 2**20:+.1f} MiB "
          f"(garbage {garbage / 2**20:.1f} MiB); glibc heap in use {(heap1 - heap0) / 2**20:+.1f} MiB")
    print(f"histograms alive at most {peak_alive} (the merge needs 3 per pending window key: at most "
          f"{3 * peak_pending})")


def main() -> None:
    """Run the benchmark and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=None, help="default 500 (--memory: 2)")
    ap.add_argument("--streams", type=int, default=None, help="default 20 (--memory: 3)")
    ap.add_argument("--seconds", type=int, default=None, help="default 10 (--memory: 600, a 10-minute soak)")
    ap.add_argument("--rate", type=int, default=25, help="requests per stream and worker per second (default 25)")
    ap.add_argument("--with-locust-stats", action="store_true",
                    help="reports carry Locust's own stats entries too, merged by Locust's worker_report listener")
    ap.add_argument("--memory", action="store_true", help="measure what the master keeps (see above), not its speed")
    ap.add_argument("--hdrh-cycle", action="store_true", help="--memory: histograms as before the fix (GC-only)")
    args = ap.parse_args()
    defaults = (2, 3, 600) if args.memory else (500, 20, 10)
    args.workers, args.streams, args.seconds = (given if given is not None else default for given, default in zip(
        (args.workers, args.streams, args.seconds), defaults, strict=True))
    if args.memory:
        memory(args)
        return
    pool = window_pool(args.rate)
    locust_pool = locust_stats_pool(args.streams, args.rate) if args.with_locust_stats else None
    events, locust_stats = Events(), RequestStats()
    if locust_pool:
        setup_distributed_stats_event_listeners(events, locust_stats)  # what a MasterRunner's stats subscribe
    t0 = (time.time_ns() // NS_PER_S) * NS_PER_S
    proc = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        traffic = TritonTraffic(run_dir=tmp)
        traffic.run_dir = RunDir(Path(tmp))
        traffic._watermarks = {f"worker-{w}": 0.0 for w in range(args.workers)}  # as test_start on a master
        events.worker_report.add_listener(traffic._on_worker_report)
        rss0 = proc.memory_info().rss
        cpu, worst, peak_pending, bytes_in = 0.0, 0.0, 0, 0
        for sec in range(args.seconds):
            wire = reports(t0 + sec * NS_PER_S, args.workers, args.streams, pool, locust_pool)
            bytes_in += sum(len(m) for m in wire)
            start = time.process_time()
            for raw in wire:
                msg = Message.unserialize(raw)
                events.worker_report.fire(client_id=msg.node_id, data=msg.data)  # as MasterRunner does
            spent = time.process_time() - start
            cpu += spent
            worst = max(worst, spent)
            peak_pending = max(peak_pending, len(traffic.pending))
        rss1 = proc.memory_info().rss
        traffic._flush()
        records = [json.loads(line) for line in (Path(tmp) / "windows.jsonl").read_text().splitlines()]
    merged = args.workers * args.streams * args.seconds
    got = {(r["window_start_ns"], r["stream"]): (r["sent"], r["succeeded"],
                                                 decode_histogram(r["latency_us_hdr"]).get_total_count())
           for r in records}
    exact = (len(records) == len(got) == args.streams * args.seconds
             and got == expected_totals(args.workers, args.streams, args.seconds, t0, pool)
             and all(r["processes"] == args.workers for r in records))
    ref = new_histogram()
    for w in range(args.workers):
        text = pool[(w * 31 + 0 * 7 + t0 // NS_PER_S) % POOL]["l"]
        if text:
            ref.decode_and_add(text.encode("ascii"))
    first = next(r for r in records if r["window_start_ns"] == t0 and r["stream"] == "model0/p0/default")
    exact = exact and decode_histogram(first["latency_us_hdr"]).encode() == ref.encode()
    rate = merged / cpu
    print(f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} CPUs, Python "
          f"{platform.python_version()}")
    print(f"{args.workers} workers x {args.streams} streams x {args.seconds} s: {merged} worker-windows, "
          f"{bytes_in / 1e6:.1f} MB of messages, master CPU {cpu:.2f} s (worst second {worst:.3f} s)")
    print(f"master memory: RSS +{(rss1 - rss0) / 2**20:.1f} MiB while merging (peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB), {peak_pending} window keys "
          "left pending after a second (all written once its last worker reported)")
    if locust_pool:
        want = args.workers * args.seconds * args.rate * args.streams
        got_requests = locust_stats.total.num_requests
        exact = exact and got_requests == want
        print(f"Locust's own stats merged too: {got_requests} requests in its totals (expected {want})")
    print(f"windows_per_cpu_s={rate:.0f} workers_at_1s={rate / args.streams:.0f} exact={exact}")


if __name__ == "__main__":
    main()
