"""Cross-device rate limiting on two GPUs: the cross_device scenario and its planted global-resource twin.

Runs ``rmt run cross_device`` (per-device resource R, ``--rate-limit-resource=R:1:0 R:4:1``) and
``rmt run cross_device_global`` (the same models with a ``global`` resource G, ``G:1``) on ``rmt/zoo/multigpu``,
then prints,
per run: the cross_device verdicts, executions per device from the probe traces, the peak number of executions at once
per device, and what the collector sampled on each GPU (samples, device memory, utilisation).

Usage (a machine with >= 2 GPUs; see docs/gpu-validation.md for the set-up)::

    python3 benchmarks/gpu_cross_device.py --out $OUT/cross_device
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rmt.check import concurrency  # noqa: E402
from rmt.check.data import InstanceTrace  # noqa: E402
from rmt.check.inputs import TRACES_FILE, instance_traces  # noqa: E402
from rmt.core.resources import MULTI_GPU_REPOSITORY  # noqa: E402
from rmt.core.rundir import RunDir  # noqa: E402
from rmt.core.samples import load_series  # noqa: E402

SCENARIOS = ("cross_device", "cross_device_global")


def summarize(run_dir: Path) -> None:
    """Print the verdicts, per-device executions and per-GPU collector series of one run directory."""
    verdicts = json.loads((run_dir / "verdicts.json").read_text())
    for v in verdicts.get("verdicts", verdicts if isinstance(verdicts, list) else []):
        print(f"  verdict {v.get('check')} [{v.get('subject')}]: {v.get('status')} measured={v.get('measured')} "
              f"threshold={v.get('threshold')} — {v.get('explanation')}")
    run = RunDir(run_dir)
    by_device: dict[int, list[InstanceTrace]] = defaultdict(list)
    for trace in instance_traces(run.read(TRACES_FILE)):  # one row per execution, batch rows merged
        by_device[trace.device].append(trace)
    for dev, traces in sorted(by_device.items()):
        models: Counter[str] = Counter()
        for t in traces:
            models[t.model] += len(t.start_ns)
        prof = concurrency.profile(np.concatenate([t.start_ns for t in traces]),
                                   np.concatenate([t.end_ns for t in traces]))
        print(f"  device {dev}: {sum(models.values())} traced executions ({dict(models)}), "
              f"peak {prof.peak:g} at once, {prof.time_above_ns(prof.peak - 0.5) / 1e9:.1f} s at the peak")
    series = load_series(run)
    for measure in ("gpu_memory_used_bytes", "gpu_utilization_percent", "gpu_tree_memory_bytes"):
        for s in sorted((s for s in series.values() if s.measure == measure), key=lambda s: s.labels.get("gpu", "")):
            vals = s.values[~np.isnan(s.values)]
            scale, unit = (2**20, "MiB") if measure.endswith("bytes") else (1, "%")
            stat = f"mean {vals.mean() / scale:.0f} {unit}, max {vals.max() / scale:.0f} {unit}" if len(vals) else "-"
            print(f"  collector {measure}{{gpu={s.labels.get('gpu')}}}: {len(s.values)} samples "
                  f"({len(s.values) - len(vals)} gaps), {stat}")


def main() -> int:
    """Run both scenarios, summarise each; exit 0 when every verdict matched its expectation."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the two run directories")
    ap.add_argument("--duration", type=float, default=None, help="seconds of load per scenario (default: its own)")
    args = ap.parse_args()
    worst = 0
    for name in SCENARIOS:
        cmd = [sys.executable, "-m", "rmt", "run", name, "--model-repository", str(MULTI_GPU_REPOSITORY),
               "--out", str(args.out / name), "--expected"]
        if args.duration:
            cmd += ["--duration", str(args.duration)]
        print("$", " ".join(cmd), flush=True)
        code = subprocess.call(cmd, cwd=ROOT)
        print(f"exit code {code}", flush=True)
        worst = max(worst, code)
        if (args.out / name / "verdicts.json").exists():
            summarize(args.out / name)
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
