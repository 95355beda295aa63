"""Collector overhead: CPU % of one core and sampling jitter p99 at 10 Hz over 60 s, all sources on.

    .venv/bin/python benchmarks/bench_collector.py [--duration 60] [--interval 0.1] [--metrics-every S]
        [--nvml-every S] [--shm-every S] [--models A,B | --server-url HOST:PORT --metrics-url URL] [--out DIR]

Starts the embedded tritonserver with the zoo (every model, or only ``--models`` in explicit mode), then runs a
sidecar (process tree, Triton metrics, shm, NVML where there is a GPU; HTTP API on) in this process for
``--duration`` seconds (Triton's metrics every ``--metrics-every`` and NVML every ``--nvml-every`` seconds: the
sidecar's defaults, or the interval for every tick). CPU is this process' user+system time over the window (the
server is a separate process), split by thread (``/proc/self/task/*/schedstat``, nanoseconds); jitter is how late
each read started after its scheduled tick (``jitter_us`` of every sample). Targets: <= 1 % of a core, jitter p99 <=
5 ms.

The cost grows with the server's processes (an RSS read each per tick, a USS page walk each per round) and with the
lines of its metrics page, so compare figures taken with the same zoo: ``--models`` reproduces an earlier one.

``--server-url`` watches a server already running instead (e.g. ``rmt server start``): two versions of the collector
are then compared on one server, one after the other — run this script with an older checkout first on
``PYTHONPATH`` (options that version does not have are left out and printed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

from rmt.collect.procfs import ProcFiles
from rmt.collect.sidecar import DEFAULT_SOURCES, Sidecar, SidecarOptions
from rmt.collect.target import ServerTarget
from rmt.core.rundir import RunDir
from rmt.core.samples import SAMPLES_FILE
from rmt.server import EmbeddedServer, ServerOptions


def thread_cpu_ns() -> dict[str, int]:
    """CPU nanoseconds of each live thread of this process, by thread name (``/proc/self/task/*/schedstat``)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, int] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat", "rb") as fh:
                ns = int(fh.read().split()[0])
        except FileNotFoundError:
            continue
        name = names.get(int(tid), f"tid {tid}")
        out[name] = out.get(name, 0) + ns
    return out


def primitives(target: ServerTarget) -> None:
    """Print the CPU cost of one call of each read the process and shm sources make, for tritonserver and a stub:
    where a host's figures differ, this says which read makes the difference."""
    def cost_us(fn: Callable[[], object], n: int) -> float:
        t0 = time.thread_time_ns()
        for _ in range(n):
            fn()
        return (time.thread_time_ns() - t0) / n / 1e3

    tree = target.processes()
    server = ProcFiles(tree[0].proc.pid)
    stubs = [tp for tp in tree if tp.info.role == "stub"]
    stub = ProcFiles(stubs[0].proc.pid) if stubs else server
    shm = [e.path for e in os.scandir("/dev/shm")][:1] or ["/dev/shm"]
    try:
        rows = [("statm pread (RSS)", server.rss_bytes, stub.rss_bytes, 5000),
                ("stat pread (threads, CPU)", server.threads_and_cpu_s, stub.threads_and_cpu_s, 2000),
                ("fd count", server.open_fds, stub.open_fds, 2000),
                ("smaps_rollup (USS)", server.uss_bytes, stub.uss_bytes, 5)]
        for name, on_server, on_stub, n in rows:
            print(f"  {name:28s} tritonserver {cost_us(on_server, n):9.1f} us   stub {cost_us(on_stub, n):9.1f} us")
        print(f"  {'stat of a /dev/shm file':28s} {cost_us(lambda: os.stat(shm[0]), 5000):9.1f} us;"
              f"  getppid {cost_us(os.getppid, 20000):.2f} us;"
              f"  1 ms sleep {cost_us(lambda: time.sleep(0.001), 200):.1f} us")
    finally:
        server.close()
        stub.close()


def cpu_model() -> str:
    """The CPU model name (``lscpu``'s), from ``/proc/cpuinfo``."""
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--metrics-every", type=float, default=SidecarOptions.metrics_every_s,
                        help="Triton metrics cadence in seconds (default: the sidecar's, %(default)s)")
    parser.add_argument("--nvml-every", type=float, default=SidecarOptions.nvml_every_s,
                        help="NVML cadence in seconds (default: the sidecar's, %(default)s)")
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--shm-every", type=float, default=getattr(SidecarOptions, "shm_every_s", 0.1),
                        help="/dev/shm cadence in seconds (default: the sidecar's, %(default)s)")
    parser.add_argument("--models", help="comma-separated zoo models to load (default: the whole zoo)")
    parser.add_argument("--server-url", metavar="HOST:PORT", help="watch this running server instead of starting one")
    parser.add_argument("--metrics-url", metavar="URL", help="its metrics page (with --server-url)")
    parser.add_argument("--primitives", action="store_true", help="also print what each /proc and shm read costs")
    parser.add_argument("--out", type=Path, help="keep the run directory here (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rmt-bench-collector-"))
    options = ServerOptions()
    if args.models:
        options = ServerOptions(model_control_mode="explicit", load_models=args.models.split(","))
    with contextlib.ExitStack() as stack:
        if args.server_url:
            http_url, metrics_url = args.server_url, args.metrics_url
        else:
            server = stack.enter_context(EmbeddedServer(options))
            http_url, metrics_url = server.http_url, server.metrics_url
        target = ServerTarget(http_url=http_url, metrics_url=metrics_url)
        n_procs = len(target.processes())
        with urllib.request.urlopen(target.metrics_url() or "", timeout=10) as resp:
            n_lines = resp.read().count(b"\n")
        if args.primitives:
            print("CPU per call:")
            primitives(target)
        run = RunDir(out)
        me = psutil.Process()
        wanted = {"interval_s": args.interval, "port": 0, "sources": args.sources.split(","),
                  "metrics_every_s": args.metrics_every, "nvml_every_s": args.nvml_every,
                  "shm_every_s": args.shm_every}
        known = {f.name for f in dataclasses.fields(SidecarOptions)}
        if set(wanted) - known:
            print(f"this collector has no {', '.join(sorted(set(wanted) - known))}: left out")
        sidecar_options = SidecarOptions(**{k: v for k, v in wanted.items() if k in known})
        with Sidecar(target, run, sidecar_options) as sidecar:
            time.sleep(2.0)  # settle: first tree read, first USS round, connections open
            threads0 = thread_cpu_ns()
            cpu0, wall0 = sum(me.cpu_times()[:2]), time.monotonic()
            time.sleep(args.duration)
            cpu1, wall1 = sum(me.cpu_times()[:2]), time.monotonic()
            threads1 = thread_cpu_ns()
            statuses = sidecar.collector.statuses()
            process = next((s for s in sidecar.collector.sources if s.name == "process"), None)
            uss = {k: getattr(process, k) for k in ("uss_interval_s", "uss_round_cpu_s") if hasattr(process, k)}
        run.close()
    rows = [json.loads(line) for line in (out / SAMPLES_FILE).read_text().splitlines()]
    jitter_ms = np.asarray([r["jitter_us"] for r in rows if r["ok"]]) / 1000
    duration_ms = np.asarray([r["duration_us"] for r in rows if r["ok"]]) / 1000
    cpu_pct = 100 * (cpu1 - cpu0) / (wall1 - wall0)
    on = [s.name for s in statuses if s.info.available]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}")
    print(f"server: {args.models or 'the whole zoo'}: {n_procs} processes, {n_lines} metrics lines; "
          f"sources: {','.join(on)}; interval {args.interval} s (Triton metrics every {args.metrics_every:g} s, "
          f"NVML every {args.nvml_every:g} s, shm every {args.shm_every:g} s); "
          f"window {wall1 - wall0:.1f} s")
    print(f"collector CPU: {cpu_pct:.2f} % of one core")
    for name in sorted(threads1, key=lambda n: threads0.get(n, 0) - threads1[n]):
        share = 100 * (threads1[name] - threads0.get(name, 0)) / 1e9 / (wall1 - wall0)
        if share >= 0.0005:  # idle threads (a library's pool) left out
            print(f"  thread {name:36s} {share:.3f} %")
    print(f"jitter: p50 {np.percentile(jitter_ms, 50):.3f} ms, p99 {np.percentile(jitter_ms, 99):.3f} ms, "
          f"max {jitter_ms.max():.3f} ms over {len(jitter_ms)} reads")
    for s in statuses:
        if s.info.available:
            d = np.asarray([r["duration_us"] for r in rows if r["ok"] and r["source"] == s.name]) / 1000
            print(f"  {s.name:15s} reads {s.samples_total:5d} gaps {s.errors_total:3d}  "
                  f"read p50 {np.percentile(d, 50):.3f} ms p99 {np.percentile(d, 99):.3f} ms")
    if uss:
        print(f"  USS: last round {1e3 * uss.get('uss_round_cpu_s', float('nan')):.1f} ms of CPU, "
              f"rounds every {uss.get('uss_interval_s', float('nan')):.0f} s")
    print(f"all reads: duration p50 {np.percentile(duration_ms, 50):.3f} ms; run directory {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
