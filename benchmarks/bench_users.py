"""Client efficiency: server-confirmed inferences per client CPU-second; rmt vs Locust+tritonclient vs perf_analyzer.

One embedded tritonserver, one model (``ident``: the zoo's probe with no delay, 2 instances), the same request
(INPUT0 FP32 [1, 16], zeros) and the same concurrency for every contender. Each contender runs in its own process;
after a warm-up the script samples that process's CPU time (user + system) and the model's ``inference_count``
(``v2/models/ident/stats``) at the start and end of a ``--seconds`` interval, then ends the process by PID.

perf_analyzer is the binary inside the ``tritonclient==2.41.0`` wheel (newer ones need glibc 2.38), fetched with
``pip download`` into ``--cache-dir`` with ``libcudart.so.12`` (``nvidia-cuda-runtime-cu12<12.5``) and Debian's
``libb64-0d`` (``apt-get download``); when any piece is missing it is skipped with the reason and counts as ``nan``.

Usage: ``.venv/bin/python benchmarks/bench_users.py --seconds 10``. Last line: ``http_ratio=X grpc_ratio=Y``
(rmt / perf_analyzer per protocol).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import tritonclient.http as httpclient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rmt.core.resources import ZOO_REPOSITORY  # noqa: E402
from rmt.server import EmbeddedServer, ServerOptions  # noqa: E402

BIN = Path(sys.executable).parent
MODEL = "ident"
PLAIN_LOCUSTFILE = '''
import time
import numpy as np
from locust import User, task

ARRAY = np.zeros((1, 16), np.float32)


class _Plain(User):
    abstract = True
    request_type = ""

    @task
    def infer(self):
        start, error = time.perf_counter(), None
        try:
            self.triton.infer("ident", self.inputs)
        except Exception as exc:
            error = exc
        self.environment.events.request.fire(request_type=self.request_type, name="ident", response_length=0,
                                             response_time=(time.perf_counter() - start) * 1000, exception=error,
                                             context={})


class PlainHttp(_Plain):
    request_type = "HTTP"

    def on_start(self):
        import tritonclient.http as httpclient
        self.triton = httpclient.InferenceServerClient(self.host.split("://")[-1])
        self.inputs = [httpclient.InferInput("INPUT0", [1, 16], "FP32")]
        self.inputs[0].set_data_from_numpy(ARRAY, binary_data=True)


class PlainGrpc(_Plain):
    request_type = "gRPC"

    def on_start(self):
        from grpc.experimental import gevent as grpc_gevent
        grpc_gevent.init_gevent()
        import tritonclient.grpc as grpcclient
        self.triton = grpcclient.InferenceServerClient(self.host.split("://")[-1])
        self.inputs = [grpcclient.InferInput("INPUT0", [1, 16], "FP32")]
        self.inputs[0].set_data_from_numpy(ARRAY)
'''


def identity_repository(folder: Path) -> Path:
    """A repository with ``ident``: the probe's config and code with ``execute_delay_us`` 0."""
    model = folder / MODEL
    (model / "1").mkdir(parents=True)
    config = (ZOO_REPOSITORY / "probe" / "config.pbtxt").read_text()
    (model / "config.pbtxt").write_text(config.replace('string_value: "2000"', 'string_value: "0"'))
    (model / "1" / "model.py").symlink_to((ZOO_REPOSITORY / "probe" / "1" / "model.py").resolve())
    return folder


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def perf_analyzer(cache: Path) -> tuple[Path, dict[str, str]] | str:
    """``(binary, environment)`` of the tritonclient 2.41.0 perf_analyzer, or why it cannot run."""
    cache.mkdir(parents=True, exist_ok=True)
    wheels = cache / "wheels"
    pip = [str(BIN / "python"), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels)]
    for spec, platform in (("tritonclient==2.41.0", "manylinux1_x86_64"),
                           ("nvidia-cuda-runtime-cu12<12.5", "manylinux2014_x86_64")):
        stem = spec.split("=")[0].split("<")[0].replace("-", "_")
        if not list(wheels.glob(f"{stem}-*.whl")):
            done = _run([*pip, "--platform", platform, "--python-version", "3.11", spec], cache)
            if done.returncode:
                return f"pip download {spec} failed: {done.stderr.strip().splitlines()[-1:]}"
    binary = cache / "perf_analyzer"
    libs = cache / "lib"
    libs.mkdir(exist_ok=True)
    if not binary.exists():
        with zipfile.ZipFile(next(wheels.glob("tritonclient-2.41.0-*.whl"))) as whl:
            binary.write_bytes(whl.read("tritonclient-2.41.0.data/data/bin/perf_analyzer"))
        binary.chmod(0o755)
    if not (libs / "libcudart.so.12").exists():
        with zipfile.ZipFile(next(wheels.glob("nvidia_cuda_runtime_cu12-*.whl"))) as whl:
            (libs / "libcudart.so.12").write_bytes(whl.read("nvidia/cuda_runtime/lib/libcudart.so.12"))
    if not (libs / "libb64.so.0d").exists() and not _system_has("libb64.so.0d"):
        debs = list(cache.glob("libb64-0d_*.deb"))
        if not debs:
            _run(["apt-get", "download", "libb64-0d"], cache)
            debs = list(cache.glob("libb64-0d_*.deb"))
        if not debs:
            return "Debian package libb64-0d unavailable: run `apt-get update && apt-get install libb64-0d`"
        _run(["dpkg-deb", "-x", str(debs[0]), str(cache / "b64")], cache)
        found = list((cache / "b64").rglob("libb64.so.0d"))
        if not found:
            return "libb64.so.0d not found in the libb64-0d package"
        (libs / "libb64.so.0d").write_bytes(found[0].read_bytes())
    library_path = os.pathsep.join(filter(None, [str(libs), os.environ.get("LD_LIBRARY_PATH")]))
    env = dict(os.environ, LD_LIBRARY_PATH=library_path)
    check = subprocess.run([str(binary), "--version"], env=env, capture_output=True, text=True, timeout=60, check=False)
    if "error while loading shared libraries" in check.stderr:
        return f"perf_analyzer cannot start: {check.stderr.strip()}"
    return binary, env


def _system_has(library: str) -> bool:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    return library in out


def inference_count(server: EmbeddedServer, model: str = MODEL) -> int:
    """The model's cumulative inference count as the server reports it."""
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return int(client.get_inference_statistics(model)["model_stats"][0]["inference_count"])
    finally:
        client.close()


def cpu_seconds(proc: psutil.Process) -> float:
    """User + system CPU time of a process and its children, in s."""
    times = proc.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def measure(cmd: list[str], env: dict[str, str], server: EmbeddedServer, seconds: float,
            model: str = MODEL) -> tuple[int, float, str]:
    """Start ``cmd``; once ``model``'s inferences flow, count them and the process's CPU over ``seconds``; end it
    by PID."""
    with tempfile.TemporaryFile(mode="w+") as log:
        return _measure(cmd, env, server, seconds, log, lambda s: inference_count(s, model))


def _measure(cmd: list[str], env: dict[str, str], server: EmbeddedServer, seconds: float,
             log: Any, inference_count: Callable[[EmbeddedServer], int]) -> tuple[int, float, str]:
    popen = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc = psutil.Process(popen.pid)
        base = inference_count(server)
        deadline = time.monotonic() + 90
        while inference_count(server) < base + 2000:  # warmed up: connections open, pools built
            if popen.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                return 0, math.nan, log.read()[-1500:]
            time.sleep(0.2)
        time.sleep(1.0)
        n0, c0, t0 = inference_count(server), cpu_seconds(proc), time.monotonic()
        time.sleep(seconds)
        n1, c1, t1 = inference_count(server), cpu_seconds(proc), time.monotonic()
        return n1 - n0, c1 - c0, f"{(n1 - n0) / (t1 - t0):.0f}/s wall"
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=30)


def arguments(description: str | None) -> argparse.ArgumentParser:
    """The options every client benchmark takes (interval, concurrency, perf_analyzer cache, subset)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured interval per contender (s)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (users / perf_analyzer)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "rmt" / "perf_analyzer")
    parser.add_argument("--only", default="", help="run only contenders whose name contains this text")
    return parser


def main() -> int:
    """Run every contender and print the table and the ratios line."""
    args = arguments(__doc__).parse_args()
    work = Path(tempfile.mkdtemp(prefix="rmt-bench-users-"))
    scenario = work / "scenario.json"
    scenario.write_text(json.dumps({"traffic": {
        "mode": "closed", "max_traces_per_s": 0, "patterns": {"z": {"shape": [16], "data": "zeros"}},
        "streams": [{"model": MODEL, "pattern": "z"}]}}))
    plain = work / "plain_locustfile.py"
    plain.write_text(PLAIN_LOCUSTFILE)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    pa = perf_analyzer(args.cache_dir)
    results: dict[str, float] = {}
    with EmbeddedServer(ServerOptions(model_repository=identity_repository(work / "repo"))) as server:
        def locust(locustfile: Path, user: str, host: str, *extra: str) -> list[str]:
            return [str(BIN / "locust"), "-f", str(locustfile), "--headless", "-u", str(args.concurrency),
                    "-r", "1000", "-t", "600s", "--host", host, "--only-summary", "--loglevel", "WARNING", *extra,
                    user]

        rmt_file = ROOT / "rmt" / "load" / "locustfile.py"
        contenders: list[tuple[str, Callable[[], list[str] | str]]] = [
            ("rmt http", lambda: locust(rmt_file, "HttpTraffic", server.http_url, "--rmt-scenario", str(scenario))),
            ("rmt grpc", lambda: locust(rmt_file, "GrpcTraffic", server.grpc_url, "--rmt-scenario", str(scenario))),
            ("locust+tritonclient http", lambda: locust(plain, "PlainHttp", server.http_url)),
            ("locust+tritonclient grpc", lambda: locust(plain, "PlainGrpc", server.grpc_url)),
        ]
        for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
            def pa_cmd(protocol: str = protocol, url: str = url) -> list[str] | str:
                if isinstance(pa, str):
                    return pa
                return [str(pa[0]), "-m", MODEL, "-u", url, "-i", protocol, "--shape", "INPUT0:16",
                        "--input-data", "zero", "--concurrency-range", f"{args.concurrency}:{args.concurrency}",
                        "--measurement-interval", str(int(args.seconds * 3000 + 60000))]
            contenders.append((f"perf_analyzer {protocol}", pa_cmd))
        print(f"server {server.http_url}, model {MODEL}, concurrency {args.concurrency}, {args.seconds:g} s each; "
              f"{os.cpu_count()} CPUs", flush=True)
        for name, build in contenders:
            if args.only and args.only not in name:
                results[name] = math.nan
                continue
            cmd = build()
            if isinstance(cmd, str):
                print(f"{name:26s} skipped: {cmd}", flush=True)
                results[name] = math.nan
                continue
            run_env = pa[1] if name.startswith("perf_analyzer") and not isinstance(pa, str) else env
            count, cpu, note = measure(cmd, run_env, server, args.seconds)
            per_cpu = count / cpu if cpu and cpu > 0 else math.nan
            results[name] = per_cpu
            print(f"{name:26s} {count:8d} inferences  {cpu:6.2f} CPU-s  {per_cpu:8.0f} inf/CPU-s  ({note})",
                  flush=True)
    http = results["rmt http"] / results["perf_analyzer http"]
    grpc = results["rmt grpc"] / results["perf_analyzer grpc"]
    print(f"http_ratio={http:.2f} grpc_ratio={grpc:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
