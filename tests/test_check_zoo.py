"""On the real tritonserver with real Locust processes: each checker FAILS on its planted zoo defect and PASSES on the
healthy twin. Load comes from ``rmt.load`` (``locust --headless``), memory and counters from the collector sidecar
next to it, verdicts from :func:`rmt.check.api.evaluate` on the run directory alone (as ``rmt check`` does).

CI-sized: each run is 6–14 s of load.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rmt.check.api import CheckResult, evaluate
from rmt.collect.sidecar import Sidecar, SidecarOptions
from rmt.collect.target import ServerTarget
from rmt.core.rundir import RunDir
from rmt.server import EmbeddedServer
from tests.test_users_locust import run_locust
from tests.zoo_client import zoo_subset


def load_run(server: EmbeddedServer, tmp_path: Path, scenario: dict[str, Any], *, users: int, run_time_s: int,
             name: str = "run", collect: bool = True) -> Path:
    """Locust headless against ``server`` (the collector sidecar sampling beside it at 10 Hz); the run directory."""
    run_dir = tmp_path / name
    run = RunDir(run_dir)
    target = ServerTarget(pid=server.pid, metrics_url=server.metrics_url)
    if collect:
        with Sidecar(target, run, SidecarOptions(interval_s=0.1, port=None, uss_every_s=60.0)):
            code, err = run_locust(scenario, run_dir, server.http_url, "HttpTraffic", users=users,
                                   run_time_s=run_time_s)
    else:
        code, err = run_locust(scenario, run_dir, server.http_url, "HttpTraffic", users=users, run_time_s=run_time_s)
    assert code in (0, 1), err[-2000:]  # 1: Locust saw failed requests (planted error paths, queue rejections)
    run.close()
    run.update_manifest(server=server.describe(), scenario=scenario)
    return run_dir


def load_per_model(server: EmbeddedServer, tmp_path: Path, scenario: dict[str, Any], *, users: int,
                   run_time_s: int) -> Path:
    """One closed-loop Locust process per stream at once (``users`` each, like one perf_analyzer per model in
    Triton's QA), so every model stays backlogged whatever the others get; their records merged into one run."""
    run_dir = tmp_path / "run"
    run = RunDir(run_dir)
    streams = scenario["traffic"]["streams"]
    target = ServerTarget(pid=server.pid, metrics_url=server.metrics_url)
    with Sidecar(target, run, SidecarOptions(interval_s=0.1, port=None, uss_every_s=60.0)), \
            ThreadPoolExecutor(len(streams)) as pool:
        jobs = [pool.submit(run_locust, {"traffic": {**scenario["traffic"], "streams": [st]}}, tmp_path / f"load{i}",
                            server.http_url, "HttpTraffic", users=users, run_time_s=run_time_s)
                for i, st in enumerate(streams)]
        for job in jobs:
            code, err = job.result()
            assert code == 0, err[-2000:]
    run.close()
    for name in ("windows.jsonl", "traces.jsonl"):
        with (run_dir / name).open("a") as out:
            for i in range(len(streams)):
                out.write((tmp_path / f"load{i}" / name).read_text())
    run.update_manifest(server=server.describe(), scenario=scenario)
    return run_dir


def by_subject(result: CheckResult, check: str) -> dict[str, Any]:
    """The verdicts of ``check`` by subject."""
    return {v.subject: v for v in result.verdicts if v.check == check}


def find(verdicts: dict[str, Any], *parts: str) -> Any:
    """The one verdict whose subject holds every part."""
    found = [v for s, v in verdicts.items() if all(p in s for p in parts)]
    assert len(found) == 1, (parts, list(verdicts))
    return found[0]


RL_SCENARIO = {"traffic": {"mode": "closed",
                           "patterns": {"small": {"shape": [16], "data": "zeros"}},
                           "streams": [{"model": "rl_high", "pattern": "small"},
                                       {"model": "rl_low", "pattern": "small"}]}}


RL_DEDICATED = {"traffic": {**RL_SCENARIO["traffic"],
                            "streams": [{"model": m, "pattern": "small", "users": 4} for m in ("rl_high", "rl_low")]}}


def test_weights_fail_when_the_intended_ratio_was_never_configured(triton_server: EmbeddedServer,
                                                                  tmp_path: Path) -> None:
    # The planted defect: rl_flat_high/rl_flat_low are meant to be served 2:1 but carry no rate-limiter weights.
    scenario = {"traffic": {**RL_SCENARIO["traffic"], "streams": [
        {"model": m, "pattern": "small", "users": 4} for m in ("rl_flat_high", "rl_flat_low")]}}
    run_dir = load_run(triton_server, tmp_path, scenario, users=8, run_time_s=6, collect=False)
    result = evaluate(run_dir, 'only = weights, weights.expect = "rl_flat_high/rl_flat_low=2"')
    (weights,) = by_subject(result, "weights").values()
    done = weights.evidence["completed"]
    ratio = done["rl_flat_high"] / done["rl_flat_low"]
    print(f"unweighted pair: rl_flat_high/rl_flat_low completions = {ratio:.2f}")
    assert weights.status == "fail" and ratio < 1.4 and min(done.values()) > 100, weights.explanation


def test_weighted_priority_and_rate_limit_accounting_under_the_limiter(triton_server_factory: Any,
                                                                      tmp_path: Path) -> None:
    repo = zoo_subset(tmp_path / "repo", ["rl_high", "rl_low", "rl_plenty_high", "rl_plenty_low"])
    server = triton_server_factory(model_repository=repo, rate_limit_resources=["R1:2"])
    # Triton QA's plentiful case first: one R1:1 instance each under R1:2, so both run at once and complete alike
    plenty = {"traffic": {**RL_SCENARIO["traffic"], "streams": [
        {"model": m, "pattern": "small", "users": 4} for m in ("rl_plenty_high", "rl_plenty_low")]}}
    (alike,) = by_subject(evaluate(load_run(server, tmp_path, plenty, users=8, run_time_s=6, name="plenty",
                                            collect=False), "only = weights"), "weights").values()
    print(f"plentiful pair: {alike.explanation}")
    assert alike.status == "pass" and alike.evidence["expected_ratio"] == 1.0, alike.explanation
    run_dir = load_run(server, tmp_path, RL_DEDICATED, users=8, run_time_s=10)  # one Locust run, 4 users per model
    result = evaluate(run_dir, "only = weights, rate_limit, concurrency")
    (weights,) = by_subject(result, "weights").values()
    ratio = weights.evidence["completed"]["rl_high"] / weights.evidence["completed"]["rl_low"]
    print(f"weighted priority: rl_high/rl_low completions = {ratio:.2f}")
    assert weights.status == "pass" and ratio > 1.8, weights.explanation  # Triton QA L0_rate_limiter's bound
    assert weights.evidence["expected_ratio"] == 2.0  # R1 contended: 8 units wanted at once, budget 2
    (held,) = by_subject(result, "rate_limit").values()
    assert held.status == "pass" and held.measured <= 2 and held.evidence["executions"] > 100, held.explanation
    conc = by_subject(result, "concurrency")
    assert conc["R1 (rate limiter)"].status == "pass", conc["R1 (rate limiter)"].explanation
    assert 0.3 < conc["R1 (rate limiter)"].evidence["peak_held"] <= 2.2  # busy, yet within the budget


def test_rate_limit_accounting_fails_when_the_declared_budget_is_not_enforced(triton_server: EmbeddedServer,
                                                                             tmp_path: Path) -> None:
    # The planted violation: the same models on a server without the rate limiter, judged against R1:2.
    run_dir = load_per_model(triton_server, tmp_path, RL_SCENARIO, users=8, run_time_s=6)
    result = evaluate(run_dir, 'only = rate_limit, concurrency, rate_limit.budget = "R1:2", '
                               'concurrency.budget = "R1:2"')
    (held,) = by_subject(result, "rate_limit").values()
    assert held.status == "fail" and held.measured >= 4, held.explanation
    assert len(held.evidence["executing"]) >= 2
    conc = by_subject(result, "concurrency")
    assert conc["R1 (rate limiter)"].status == "fail", conc["R1 (rate limiter)"].explanation
    assert all(v.status == "pass" for s, v in conc.items() if s.endswith("(instances)"))


def test_cold_start_fails_without_warmup_passes_warmed_twin(triton_server_factory: Any, tmp_path: Path) -> None:
    repo = zoo_subset(tmp_path / "repo", ["cold_start", "cold_start_warmed"])
    log = tmp_path / "tritonserver.log"
    server = triton_server_factory(model_repository=repo, log_verbose=1, log_path=log)
    scenario = {"traffic": {"mode": "closed", "patterns": {"small": {"shape": [16], "data": "zeros"}},
                            "streams": [{"model": "cold_start", "pattern": "small"},
                                        {"model": "cold_start_warmed", "pattern": "small"}]}}
    run_dir = load_run(server, tmp_path, scenario, users=2, run_time_s=6, collect=False)
    shutil.copy(log, run_dir / "tritonserver.log")
    result = evaluate(run_dir, "only = warmup, warmup_executed")
    cold = by_subject(result, "warmup")
    assert cold["cold_start"].status == "fail" and cold["cold_start"].evidence["excess_us"] > 500_000
    assert cold["cold_start_warmed"].status == "pass", cold["cold_start_warmed"].explanation
    (executed,) = by_subject(result, "warmup_executed").values()
    assert executed.subject == "cold_start_warmed" and executed.status == "pass", executed.explanation
    assert executed.evidence["log_lines"] >= 1 and executed.evidence["traced_instances"]


def test_request_priority_and_queue_policy(triton_server: EmbeddedServer, tmp_path: Path) -> None:
    scenario = {"traffic": {"mode": "closed", "patterns": {"small": {"shape": [16], "data": "zeros"}},
                            "streams": [{"model": "queue_priority", "priority": 1, "pattern": "small"},
                                        {"model": "queue_priority", "priority": 2, "pattern": "small"}]}}
    # 24 users (the priority scenario's): both levels served, level 1 first
    run_dir = load_run(triton_server, tmp_path, scenario, users=24, run_time_s=8, collect=False, name="served")
    (prio,) = by_subject(evaluate(run_dir, "only = priority"), "priority").values()
    assert prio.status == "pass" and prio.measured < 1.0, prio.explanation  # the scenario's own bound
    # 40 users: 20 at level 1 keep a full batch queued, so strict priority serves level 2 rarely and its queue of 16
    # overflows: the queue policy is honoured, and level 2's latency cannot be compared (served too rarely)
    run_dir = load_run(triton_server, tmp_path, scenario, users=40, run_time_s=8, collect=False, name="overfull")
    result = evaluate(run_dir, "only = priority, queue_policy")
    (prio,) = by_subject(result, "priority").values()
    assert prio.status == "undecided" and "priority 2 had" in prio.explanation, prio.explanation
    policy = by_subject(result, "queue_policy")
    assert policy["queue_priority p2"].evidence["rejected"] > 0  # level 2's queue of 16 overflowed
    assert all(v.status == "pass" for v in policy.values()), [v.explanation for v in policy.values()]


MEMORY_PATTERNS = {
    "small": {"shape": [16]},
    "big": {"shape": [8192]},
    "negative": {"data": {"input_data": {"data": [{"INPUT0": {"content": [-1.0] * 16, "shape": [16]}}]}}},
}


def test_leak_attribution_and_pool_growth_name_the_defect(triton_server: EmbeddedServer, tmp_path: Path) -> None:
    models = ["leak_on_shape", "leak_on_shape_healthy", "leak_on_error", "leak_on_error_healthy"]
    streams = [{"model": m, "pattern": p} for m in models for p in ("small", "big" if "shape" in m else "negative")]
    streams += [{"model": m, "pattern": "small"} for m in ("pool_grow", "pool_grow_healthy")]
    scenario = {"traffic": {"mode": "closed", "patterns": MEMORY_PATTERNS, "streams": streams, "phases": [
        {"name": "a", "duration_s": 6, "weights": {s: 1 for s in (f"{m}/p0/small" for m in models)}
         | {"pool_grow/p0/small": 1, "pool_grow_healthy/p0/small": 1}},
        {"name": "b", "duration_s": 6, "weights": {f"{m}/p0/{'big' if 'shape' in m else 'negative'}": 1
                                                   for m in models}
         | {"pool_grow/p0/small": 1, "pool_grow_healthy/p0/small": 1}}]}}
    run_dir = load_run(triton_server, tmp_path, scenario, users=6, run_time_s=13)
    result = evaluate(run_dir, 'only = leak_attribution, leak, leak_attribution.max_growth = "16KiB/request", '
                               'leak_attribution.series = "process_rss_bytes*", leak.series = "process_rss_bytes*"')
    attr = by_subject(result, "leak_attribution")
    big = find(attr, "model=leak_on_shape,", "/ big")
    assert big.status == "fail" and "shape [8192]" in big.explanation, big.explanation
    assert 128 * 1024 < big.evidence["bytes_per_request"] < 512 * 1024
    negative = find(attr, "model=leak_on_error,", "/ negative")
    assert negative.status == "fail" and negative.evidence["error_path"], negative.explanation
    for parts in (("model=leak_on_shape,", "/ small"), ("model=leak_on_error,", "/ small")):
        assert find(attr, *parts).status == "pass", find(attr, *parts).explanation
    for twin in ("leak_on_shape_healthy", "leak_on_error_healthy"):
        assert all(v.status == "pass" for s, v in attr.items() if f"model={twin}," in s), twin
    leak = by_subject(result, "leak")
    assert find(leak, "model=pool_grow,").status == "fail"  # the pool never reuses: the process grows
    assert find(leak, "model=pool_grow_healthy,").status == "pass", find(leak, "model=pool_grow_healthy,").explanation
