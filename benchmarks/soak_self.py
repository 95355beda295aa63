"""rmt's own memory under a soak: ``rmt run`` (Locust master + ``--workers`` workers, 2 by default, or one local
Locust process with ``--workers 0``, + the embedded collector) against a real
tritonserver (``probe`` and ``rl_high``/``rl_low`` from the zoo) for ``--minutes``, watched by a second collector
(``rmt collect --pid`` on the ``rmt run`` process, whose tree holds the master and the workers) and judged by rmt's
own leak check on rmt's own processes (x axis: requests completed by the server).

    .venv/bin/python benchmarks/soak_self.py --minutes 10          # what docs/reliability.md records
    .venv/bin/python benchmarks/soak_self.py --minutes 60          # the 1 h soak
    .venv/bin/python benchmarks/soak_self.py --minutes 3 --workers 0   # one local Locust process

Prints the run's exit code, the leak verdicts on rmt's processes and each process's RSS at start and end; the run
directories stay under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from rmt.core.rundir import RunDir
from rmt.server import EmbeddedServer, ServerOptions

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("probe", "rl_high", "rl_low")
DEFINITION = {"description": "rmt's own soak: closed loop on probe, rl_high, rl_low",
              "traffic": {"mode": "closed", "wait_s": [0.0, 0.002],
                          "streams": [{"model": m} for m in MODELS]},
              "checks": {"only": "starvation"}, "run": {"users": 6}}


def _roles(pid: int, workers: int, deadline_s: float) -> dict[int, str]:
    """``rmt run`` (pid) and its Locust master (or local process) and workers, once all are up."""
    end = time.monotonic() + deadline_s
    roles = {pid: "rmt run"}
    while time.monotonic() < end:
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmd = child.cmdline()
                if any("locust" in part for part in cmd):
                    roles[child.pid] = "locust worker" if "--worker" in cmd else "locust master"
        if len(roles) >= 2 + workers:
            break
        time.sleep(0.5)
    return roles


def main() -> int:
    """Run the soak; print the verdicts of the leak check on rmt's processes."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2, help="Locust workers (0: one local process)")
    ap.add_argument("--out", type=Path, default=Path("runs") / f"soak-self-{time.strftime('%Y%m%d-%H%M%S')}")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    repo = Path(tempfile.mkdtemp(prefix="rmt-soak-repo-"))
    for model in MODELS:
        (repo / model).symlink_to(ROOT / "rmt" / "zoo" / "models" / model, target_is_directory=True)
    definition = args.out / "soak.json"
    definition.write_text(json.dumps(DEFINITION))
    seconds = args.minutes * 60
    with EmbeddedServer(ServerOptions(model_repository=repo, rate_limit_resources=["R1:2"])) as server:
        run = subprocess.Popen([sys.executable, "-m", "rmt", "run", str(definition), "--host", server.http_url,
                                "--workers", str(args.workers), "--duration", f"{seconds:g}",
                                "--out", str(args.out / "run")],
                               stdout=(args.out / "run.log").open("w"), stderr=subprocess.STDOUT)
        watch = subprocess.Popen([sys.executable, "-m", "rmt", "collect", "--pid", str(run.pid), "--metrics-url",
                                  server.metrics_url, "--out", str(args.out / "self"),
                                  "--no-api", "--sources", "process,triton_metrics", "--interval", "1",
                                  "--duration", f"{seconds + 60:g}"],
                                 stdout=(args.out / "collect.log").open("w"), stderr=subprocess.STDOUT)
        roles = _roles(run.pid, args.workers, deadline_s=120)
        print("rmt's processes: " + ", ".join(f"pid{pid}={role}" for pid, role in sorted(roles.items())), flush=True)
        code = run.wait(timeout=seconds + 600)
        watch.terminate()
        watch.wait(timeout=60)
    print(f"rmt run exit code {code} ({args.out / 'run.log'})")
    check = subprocess.run([sys.executable, "-m", "rmt", "check", str(args.out / "self"), "--checks",
                            "only=leak,leak.series=process_rss_bytes*"], capture_output=True, text=True,
                           check=False)
    print(check.stdout + check.stderr)
    rss = [r for r in RunDir(args.out / "self", create=False).read("series.jsonl")
           if r.get("measure") == "process_rss_bytes"]
    print(f"{len(rss)} RSS series of rmt's processes; figures: rmt report {args.out / 'self'}")
    return check.returncode


if __name__ == "__main__":
    sys.exit(main())
