"""Collector overhead: CPU % of one core and sampling jitter p99 at 10 Hz over 60 s, all sources on.

    .venv/bin/python benchmarks/bench_collector.py [--duration 60] [--interval 0.1] [--out DIR]

Starts the embedded tritonserver with the zoo (14 models, 18 processes), then runs a sidecar (process tree,
Triton metrics, shm, NVML where there is a GPU; HTTP API on) in this process for ``--duration`` seconds. CPU is this
process' user+system time over the window (the server is a separate process); jitter is how late each read started
after its scheduled tick (``jitter_us`` of every sample). Targets: <= 1 % of a core, jitter p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from collectors.series import SAMPLES_FILE
from collectors.sidecar import Sidecar, SidecarOptions
from collectors.target import ServerTarget
from rmt.rundir import RunDir
from rmt.server import EmbeddedServer, ServerOptions


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--out", type=Path, help="keep the run directory here (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="rmt-bench-collector-"))
    with EmbeddedServer(ServerOptions()) as server:
        n_procs = len(server.processes())
        run = RunDir(out)
        target = ServerTarget(http_url=server.http_url, metrics_url=server.metrics_url)
        me = psutil.Process()
        with Sidecar(target, run, SidecarOptions(interval_s=args.interval, port=0)) as sidecar:
            time.sleep(2.0)  # settle: first tree read, first USS round, connections open
            cpu0, wall0 = sum(me.cpu_times()[:2]), time.monotonic()
            time.sleep(args.duration)
            cpu1, wall1 = sum(me.cpu_times()[:2]), time.monotonic()
            statuses = sidecar.collector.statuses()
        run.close()
    rows = [json.loads(line) for line in (out / SAMPLES_FILE).read_text().splitlines()]
    jitter_ms = np.asarray([r["jitter_us"] for r in rows if r["ok"]]) / 1000
    duration_ms = np.asarray([r["duration_us"] for r in rows if r["ok"]]) / 1000
    cpu_pct = 100 * (cpu1 - cpu0) / (wall1 - wall0)
    on = [s.name for s in statuses if s.info.available]
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"server: zoo, {n_procs} processes; sources: {','.join(on)}; interval {args.interval} s; "
          f"window {wall1 - wall0:.1f} s")
    print(f"collector CPU: {cpu_pct:.2f} % of one core")
    print(f"jitter: p50 {np.percentile(jitter_ms, 50):.3f} ms, p99 {np.percentile(jitter_ms, 99):.3f} ms, "
          f"max {jitter_ms.max():.3f} ms over {len(jitter_ms)} reads")
    for s in statuses:
        if s.info.available:
            d = np.asarray([r["duration_us"] for r in rows if r["ok"] and r["source"] == s.name]) / 1000
            print(f"  {s.name:15s} reads {s.samples_total:5d} gaps {s.errors_total:3d}  "
                  f"read p50 {np.percentile(d, 50):.3f} ms p99 {np.percentile(d, 99):.3f} ms")
    print(f"all reads: duration p50 {np.percentile(duration_ms, 50):.3f} ms; run directory {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
