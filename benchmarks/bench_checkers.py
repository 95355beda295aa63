"""Checker time and peak memory on a synthetic soak (default 24 h: 1 Hz × 50 memory series, 1 s windows × 20 streams).

    .venv/bin/python benchmarks/bench_checkers.py [--hours 24] [--series 50] [--streams 20] [--executions 1000000]
                                                  [--rundir]

Phases, each timed: building the synthetic inputs (not counted), every default check on the in-memory inputs (the
pure checkers: the figure the ≤ 5 s target applies to), and with ``--rundir`` the same memory series written in the
collectors' format and read back through :mod:`rmt.check.inputs` (the adapter's cost). Peak memory is the process'
peak RSS (``ru_maxrss``), imports included. Targets: checks ≤ 5 s and ≤ 500 MB.
"""

from __future__ import annotations

import argparse
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from rmt.check.data import RunInputs
from rmt.check.latency import histogram_of
from rmt.check.ratelimit import repository_limits
from rmt.check.spec import build_checks
from rmt.check.synthetic import PAGE, instance_trace
from rmt.core.resources import ZOO_REPOSITORY


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def soak_inputs(hours: float, n_series: int, n_streams: int, executions: int, seed: int = 0) -> RunInputs:
    """A soak's worth of inputs: memory series (one leaking), windows, and rl_high/rl_low probe traces."""
    from rmt.check.data import MemorySeries, StreamWindows

    rng = np.random.default_rng(seed)
    n = int(hours * 3600)
    t = np.arange(n, dtype=float)
    done = np.cumsum(rng.poisson(200, n)).astype(float)
    memory = []
    for i in range(n_series):
        values = 5e8 + rng.normal(0, 256 * 1024, n) + (100.0 * done if i == 0 else 0.0)
        memory.append(MemorySeries(f"process_rss_bytes{{stub={i}}}", t, done,
                                   np.floor(values / PAGE) * PAGE, "pool" if i % 10 == 9 else "memory"))
    windows = []
    for k in range(n_streams):
        completed = rng.poisson(10, n).astype(float)
        windows.append(StreamWindows(f"s{k}", f"model{k % 5}", t, completed.copy(), completed, np.zeros(n),
                                     rng.poisson(1, n).astype(float), priority=1 + k % 2,
                                     latency_steady=histogram_of(rng.gamma(4, 500 * (1 + 2 * (k % 2)), 20_000)),
                                     latency_first_us=rng.gamma(4, 500, 8)))
    per = executions // 4
    traces = []
    for j, (model, inst) in enumerate([("rl_high", "rl_high_0_0"), ("rl_high", "rl_high_0_1"),
                                       ("rl_low", "rl_low_0_0"), ("rl_low", "rl_low_0_1")]):
        starts = (np.arange(per, dtype=np.int64) * 4 + j) * 1_000_000  # one at a time: 1 ms each, round robin
        traces.append(instance_trace(model, inst, starts, 1_000_000))
    return RunInputs(memory=memory, windows=windows, traces=traces, models=repository_limits(ZOO_REPOSITORY),
                     rate_limiter_on=True)


def write_rundir(path: Path, inputs: RunInputs) -> None:
    """The memory series in the collectors' format (one sample record per second with every series)."""
    from rmt.core.rundir import RunDir
    from rmt.core.samples import SAMPLES_FILE, SERIES_FILE

    run = RunDir(path)
    decl = [{"collector": "local", "id": i + 1, "seq": i + 1, "source": "process", "measure": "process_rss_bytes",
             "labels": {"name": s.name, "model": "m"}, "t_epoch_ns": 0} for i, s in enumerate(inputs.memory)]
    ok_id = len(decl) + 1
    decl.append({"collector": "local", "id": ok_id, "seq": ok_id, "source": "triton_metrics",
                 "measure": "nv_inference_request_success", "labels": {"model": "m"}, "t_epoch_ns": 0})
    run.append(SERIES_FILE, decl)
    first = inputs.memory[0]
    cols = np.stack([s.values for s in inputs.memory])
    batch = []
    for k in range(len(first.t_s)):
        values = {str(i + 1): float(v) for i, v in enumerate(cols[:, k])}
        values[str(ok_id)] = float(first.requests[k])
        batch.append({"collector": "local", "seq": 1000 + k, "source": "process", "tick": k,
                      "t_mono_ns": k * 10**9, "t_epoch_ns": k * 10**9, "jitter_us": 0.0, "duration_us": 1.0,
                      "ok": True, "error": None, "values": values})
        if len(batch) == 10_000:
            run.append(SAMPLES_FILE, batch)
            batch = []
    run.append(SAMPLES_FILE, batch)
    run.close()


def main() -> None:
    """Run the benchmark and print the figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--series", type=int, default=50)
    p.add_argument("--streams", type=int, default=20)
    p.add_argument("--executions", type=int, default=1_000_000, help="probe executions (rate-limit sweep)")
    p.add_argument("--rundir", action="store_true", help="also time the adapter on a run directory")
    args = p.parse_args()
    base = peak_rss_mb()
    inputs = soak_inputs(args.hours, args.series, args.streams, args.executions)
    built = peak_rss_mb()
    checks = build_checks({})
    t0 = time.perf_counter()
    verdicts = []
    per_check = {}
    for c in checks:
        t = time.perf_counter()
        verdicts += c.run(inputs)
        per_check[c.name] = time.perf_counter() - t
    elapsed = time.perf_counter() - t0
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()} "
          f"python {platform.python_version()}")
    print(f"inputs: {args.hours:g} h, {args.series} memory series × {len(inputs.memory[0].t_s)} samples, "
          f"{args.streams} streams × {len(inputs.windows[0].t_s)} windows, {args.executions} probe executions")
    print(f"checks: {elapsed:.2f} s for {len(verdicts)} verdicts "
          f"({', '.join(f'{k} {v:.2f}' for k, v in per_check.items())})")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (after imports {base:.0f} MB, after building inputs {built:.0f} MB)")
    fails = sorted({v.subject for v in verdicts if v.failed})
    print(f"failed subjects: {fails}")
    if args.rundir:
        with tempfile.TemporaryDirectory() as tmp:
            write_rundir(Path(tmp), inputs)
            size = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 1e6
            from rmt.check.inputs import load_inputs
            from rmt.core.rundir import RunDir

            t = time.perf_counter()
            loaded = load_inputs(RunDir(tmp, create=False))
            read_s = time.perf_counter() - t
            t = time.perf_counter()
            mem_verdicts = [v for c in checks if c.name in ("leak", "pool") for v in c.run(loaded)]
            print(f"adapter: read {size:.0f} MB of collector samples into {len(loaded.memory)} series in "
                  f"{read_s:.2f} s; leak/pool checks on them {time.perf_counter() - t:.2f} s "
                  f"({sum(v.failed for v in mem_verdicts)} failed); peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
