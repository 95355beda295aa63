"""Machine/server identity for the manifest, and two capacity runs side by side (``rmt compare``).

:func:`machine_info` is what ``rmt capacity`` writes under ``machine_info`` (pytest-benchmark's anchor): host,
platform, CPU model and count, memory, Python, the Triton wheel, and the server's own version when it answers
``GET v2``. :func:`compare_runs` sets capacity, latency and memory of two run directories against each other and warns
when the machines or server versions differ (their numbers are then not comparable).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rmt.check.capacity_analysis import Capacity, analyse, by_scope
from rmt.check.capacity_checks import cpu_count_of
from rmt.check.capacity_steps import StepFigures, step_figures
from rmt.core.errors import ConfigError
from rmt.core.hosts import base_url
from rmt.core.rundir import MANIFEST, RunDir

#: machine_info keys whose difference makes two runs' numbers incomparable.
HARDWARE_KEYS = ("cpu_model", "cpu_count", "memory_bytes", "platform", "gpus")
SERVER_KEYS = ("server_version", "triton_wheel")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return platform.processor()
    return platform.processor()


def server_version(http_url: str | None) -> str:
    """The server's ``GET v2`` version ('' when it does not answer)."""
    if not http_url:
        return ""
    try:
        with urllib.request.urlopen(f"{base_url(http_url)}/v2", timeout=5) as resp:
            return str(json.loads(resp.read()).get("version", ""))
    except (urllib.error.URLError, OSError, ValueError):
        return ""


def machine_info(http_url: str | None = None, gpus: Sequence[str] = ()) -> dict[str, Any]:
    """This machine and the server behind ``http_url`` (names, counts, versions)."""
    try:
        wheel = importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        wheel = ""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_model": _cpu_model(), "cpu_count": os.cpu_count() or 0, "memory_bytes": int(pages),
            "python": platform.python_version(), "triton_wheel": wheel, "server_version": server_version(http_url),
            "gpus": list(gpus)}


def mismatches(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """One warning per hardware or server key that differs between two machine_info blocks."""
    if not a or not b:
        missing = "A" if not a else "B"
        return [f"run {missing} has no machine_info: hardware and server versions cannot be compared"]
    out = []
    for key in HARDWARE_KEYS + SERVER_KEYS:
        if a.get(key) != b.get(key):
            kind = "hardware" if key in HARDWARE_KEYS else "server version"
            out.append(f"{kind} differs: {key} = {a.get(key)!r} vs {b.get(key)!r}")
    return out


def _load(path: Path, slo_p99_ms: float) -> tuple[dict[str, Any], dict[str, list[StepFigures]], dict[str, Capacity]]:
    run = RunDir(path, create=False)
    if not (path / MANIFEST).exists() or not (path / "windows.jsonl").exists():
        raise ConfigError(f"{path} is not a run directory (no {MANIFEST} or windows.jsonl): pass a folder that "
                          "rmt capacity or rmt run wrote")
    manifest = run.manifest()
    scopes = by_scope(step_figures(path))
    if not scopes:
        raise ConfigError(f"{path} holds no capacity steps (phases step-NN@Rrps): run rmt capacity first")
    options = (manifest.get("server") or {}).get("options") or {}
    limiter = options.get("rate_limit") == "execution_count" or bool(options.get("rate_limit_resources"))
    caps = {s: analyse(f, slo_p99_ms=slo_p99_ms, cpu_count=cpu_count_of(manifest), rate_limiter=limiter)
            for s, f in scopes.items()}
    return manifest, scopes, caps


def _num(value: float, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value / scale:,.{digits}f}"


def _delta(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or a == 0:
        return "-"
    return f"{(b - a) / a:+.0%}"


def compare_runs(run_a: Path, run_b: Path, slo_p99_ms: float = 0.0) -> tuple[list[list[str]], list[str]]:
    """(table rows ``[scope, figure, A, B, change]``, warnings) for two sweep run directories."""
    ma, sa, ca = _load(run_a, slo_p99_ms)
    mb, sb, cb = _load(run_b, slo_p99_ms)
    warnings = mismatches(ma.get("machine_info") or {}, mb.get("machine_info") or {})
    rows: list[list[str]] = []
    for scope in [s for s in ca if s in cb]:
        a, b = ca[scope], cb[scope]
        rows += [[scope, "max sustainable req/s", _num(a.max_sustainable_per_s), _num(b.max_sustainable_per_s),
                  _delta(a.max_sustainable_per_s, b.max_sustainable_per_s)],
                 [scope, "saturation req/s", _num(a.saturation_per_s), _num(b.saturation_per_s),
                  _delta(a.saturation_per_s, b.saturation_per_s)],
                 [scope, "knee req/s", _num(a.knee_per_s), _num(b.knee_per_s), _delta(a.knee_per_s, b.knee_per_s)],
                 [scope, "knee p99 ms", _num(a.knee_p99_us, 1000), _num(b.knee_p99_us, 1000),
                  _delta(a.knee_p99_us, b.knee_p99_us)],
                 [scope, "binds first", a.binding, b.binding, ""]]
        if scope == "all":
            for key in sorted({k for f in sa["all"] for k in f.memory_bytes} & {k for f in sb["all"]
                                                                                for k in f.memory_bytes}):
                peak_a = max(f.memory_bytes.get(key, math.nan) for f in sa["all"])
                peak_b = max(f.memory_bytes.get(key, math.nan) for f in sb["all"])
                rows.append([scope, f"peak {key} MiB", _num(peak_a, 2**20), _num(peak_b, 2**20),
                             _delta(peak_a, peak_b)])
    only = sorted(set(ca) ^ set(cb))
    if only:
        warnings.append(f"streams in one run only: {', '.join(only)}")
    return rows, warnings


def format_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])
