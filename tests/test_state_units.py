"""Stateful paths without a server: pattern properties, request building, region bookkeeping, the checks' verdicts."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from rmt.check.base import FAIL, PASS, SKIP
from rmt.check.cache_checks import CacheBoundedCheck, CacheHitRatioCheck
from rmt.check.composing import ComposingAttributionCheck, composing_parents
from rmt.check.data import CounterSeries, MemorySeries, RunInputs
from rmt.check.path_checks import SequenceSlotsCheck, ShmBackendGrowthCheck, ShmRegionsCheck, peak_open, sequence_slots
from rmt.check.synthetic import windows
from rmt.cli import main as rmt_main
from rmt.core.errors import ConfigError
from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.resources import ZOO_REPOSITORY
from rmt.core.scenario import parse_scenario
from rmt.load import shmio
from rmt.load.payloads import build_pool, encode_grpc, encode_http, resolve_stream
from rmt.load.shmio import (
    CUDA_MISSING,
    KINDS,
    Region,
    ShmControl,
    ShmKind,
    ShmRegistry,
    require_kind,
    require_kinds_for,
    require_local,
    require_local_for,
)
from rmt.load.stateful import RECLAIMED_TEXT, SequenceDriver, StatefulStream

ZOO = {name: load_config_pbtxt(ZOO_REPOSITORY / name / "config.pbtxt")
       for name in ("probe", "seq_state", "cached", "ensemble_pair")}


def pool_of(model: str, pattern: dict[str, Any], **top: Any) -> Any:
    scenario = parse_scenario({"patterns": {"p": pattern}, "streams": [{"model": model, "pattern": "p"}], **top})
    stream = scenario.streams[0]
    return build_pool(resolve_stream(stream, scenario.pattern("p"), ZOO[model]), scenario, "http")


@pytest.mark.parametrize(("pattern", "expected"), [
    ({"sequence": {"abandon": 2}}, "sequence.abandon = 2"),
    ({"sequence": {"id": "uuid"}}, "use one of uint64, string"),
    ({"sequence": {"length": {"uniform": [5, 2]}}}, "length.uniform[1] = 2"),
    ({"shm": {"lifecycle": "forever"}}, "use one of per_user, per_request, once"),
    ({"shm": {"lifecycle": "once", "outputs": True}}, "shared read-only"),
    ({"shm": {"kind": "gpu"}}, "shm.kind = 'gpu': use one of system, cuda"),
    ({"shm": {"device": 1}}, "shm.device: only CUDA regions live on a device: add \"kind\": \"cuda\""),
    ({"shm": {"kind": "system", "device": 0}}, "only CUDA regions live on a device"),
    ({"shm": {"kind": "cuda", "device": -1}}, "shm.device = -1: write an integer >= 0"),
    ({"shm": {"kind": "cuda", "device": 0.5}}, "shm.device = 0.5: write an integer"),
    ({"cache": {}}, "give the cache hit_ratio"),
    ({"cache": {"hit_ratio": 0.5, "size": 3}}, "unknown key 'size'"),
])
def test_bad_path_properties_are_one_line_errors(pattern: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")) as info:
        parse_scenario({"patterns": {"p": pattern}, "streams": [{"model": "probe", "pattern": "p"}]})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("model", "pattern", "expected"), [
    ("probe", {"sequence": {"length": 3}}, "has no sequence batcher"),
    ("seq_state", {"shape": [16]}, "every request needs a sequence id"),
    ("probe", {"cache": {"hit_ratio": 0.5}}, "has no response cache"),
])
def test_paths_the_model_lacks_are_refused_before_load(model: str, pattern: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        pool_of(model, pattern)


def test_shm_needs_the_server_on_this_host() -> None:
    require_local("127.0.0.1")
    require_local("localhost")
    with pytest.raises(ConfigError, match="only with tritonserver on this host"):
        require_local("192.0.2.10")
    with pytest.raises(ConfigError, match="remote server"):
        require_local_for({"traffic": {"patterns": {"m": {"shm": {}}}}}, "http://192.0.2.10:8000")
    require_local_for({"patterns": {"m": {"shape": [4]}}}, "192.0.2.10:8000")  # no shm: no objection


def test_shm_kind_and_device_parse_with_system_the_default() -> None:
    def spec(shm: dict[str, Any]) -> Any:
        scenario = parse_scenario({"patterns": {"p": {"shm": shm}}, "streams": [{"model": "probe", "pattern": "p"}]})
        return scenario.pattern("p").shm

    plain = spec({"lifecycle": "per_request"})
    assert (plain.kind, plain.device, plain.lifecycle) == ("system", 0, "per_request")
    cuda = spec({"kind": "cuda", "device": 3, "lifecycle": "per_user", "outputs": True})
    assert (cuda.kind, cuda.device, cuda.lifecycle, cuda.outputs) == ("cuda", 3, "per_user", True)
    assert set(KINDS) == {"system", "cuda"} and all(KINDS[k].name == k for k in KINDS)


def test_cuda_shm_without_cuda_python_is_refused_in_one_line() -> None:
    absent = "rmt_tests_no_such_module.runtime"
    traffic = {"traffic": {"patterns": {"c": {"shm": {"kind": "cuda"}}, "s": {"shm": {}}}}}
    with pytest.raises(ConfigError) as info:
        require_kinds_for(traffic, module=absent)
    assert str(info.value) == CUDA_MISSING == ("CUDA shared memory needs the cuda-python package: "
                                               "pip install cuda-python")
    require_kinds_for(traffic, module="json")  # importable: no objection
    require_kinds_for({"patterns": {"s": {"shm": {"kind": "system"}}, "n": {"shape": [4]}}}, module=absent)
    require_kind("system", module=absent)
    with pytest.raises(ConfigError, match="pip install cuda-python"):
        require_kind("cuda", module=absent)
    with pytest.raises(ConfigError, match="remote server"):  # a CUDA region is local to the host too
        require_local_for({"patterns": {"c": {"shm": {"kind": "cuda"}}}}, "grpc://192.0.2.10:8001")


@pytest.mark.skipif(importlib.util.find_spec("cuda") is not None, reason="cuda-python is installed here")
def test_rmt_run_refuses_cuda_shm_without_cuda_python_before_a_server_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    definition = tmp_path / "cuda_shm.json"
    definition.write_text(json.dumps({
        "traffic": {"patterns": {"c": {"shape": [64], "shm": {"kind": "cuda", "lifecycle": "per_request"}}},
                    "streams": [{"model": "probe_gpu", "pattern": "c"}]},
        "checks": {}, "run": {"duration_s": 2}}))
    code = rmt_main(["run", str(definition), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"rmt: error: {CUDA_MISSING}\n", err
    assert not (tmp_path / "run").exists()  # refused before the run directory or a server


def test_sequence_steps_carry_start_and_end_and_abandoned_ones_are_probed() -> None:
    records: list[dict[str, Any]] = []
    pool = pool_of("seq_state", {"sequence": {"length": 3, "abandon": 0.5, "in_flight": 2, "id": "string",
                                              "probe_after_s": 0.25}})
    driver = SequenceDriver(pool, lambda _name, rec: records.append(rec), random.Random(3))
    steps: dict[Any, list[tuple[bool, bool]]] = {}
    now = 10**18
    for _ in range(60):
        seq, params = driver.next_step()
        steps.setdefault(params["sequence_id"], []).append((params["sequence_start"], params["sequence_end"]))
        now += 1_000_000
        driver.step_done(seq, True, now)
    finished = {k: v for k, v in steps.items() if len(v) == 3}
    assert len({k for k in steps}) >= 20 and all(isinstance(k, str) for k in steps)
    for flags in finished.values():
        assert [s for s, _ in flags] == [True, False, False]
        assert flags[-1][1] in (True, False) and not any(e for _, e in flags[:-1])
    abandoned = [k for k, v in finished.items() if not v[-1][1]]
    assert abandoned and len(abandoned) < len(finished)
    assert driver.due_probe(now) is None  # not before idle (300 ms) + 0.25 s
    due = driver.due_probe(now + int(0.56e9))
    assert due is not None and due[1] == {"sequence_id": due[0].cid, "sequence_start": False, "sequence_end": True}
    driver.probe_done(due[0], False, f"inference request for sequence x {RECLAIMED_TEXT} on the first", now)
    driver.close(now)
    probed = [r for r in records if r["probe"]]
    assert probed[0]["probe"] == "reclaimed" and probed[0]["outcome"] == "abandoned"
    assert {r["outcome"] for r in records} <= {"ended", "abandoned", "open"}


def test_cache_mix_repeats_its_set_or_never_repeats() -> None:
    pool = pool_of("cached", {"shape": [8], "cache": {"hit_ratio": 1.0, "repeated": 2}})
    hits = StatefulStream(pool, lambda *_: None, None, None, random.Random(1))
    seen = {hits.next().arrays["INPUT0"].tobytes() for _ in range(50)}
    assert len(seen) == 2
    pool = pool_of("cached", {"shape": [8], "cache": {"hit_ratio": 0.0}})
    misses = StatefulStream(pool, lambda *_: None, None, None, random.Random(1))
    bodies = [misses.next().arrays["INPUT0"].tobytes() for _ in range(500)]
    assert len(set(bodies)) == 500


def test_encoders_carry_sequence_parameters_and_shm_placement() -> None:
    pool = pool_of("probe", {"shape": [4], "shm": {"lifecycle": "per_request", "outputs": True}})
    resolved, arrays = pool.resolved, pool.arrays[0]
    place = {"INPUT0": {"shared_memory_region": "r", "shared_memory_byte_size": 16, "shared_memory_offset": 0},
             "OUTPUT0": {"shared_memory_region": "r", "shared_memory_byte_size": 16, "shared_memory_offset": 16}}
    extra = {"sequence_id": 7, "sequence_start": True, "sequence_end": False}
    body = encode_http(resolved, arrays, extra, place)
    head = json.loads(body.json_head + b"x" * 20 + body.json_tail)
    assert body.binary == b"" and head["inputs"][0]["parameters"] == place["INPUT0"]
    assert {o["name"]: o["parameters"] for o in head["outputs"]} == {"OUTPUT0": place["OUTPUT0"],
                                                                     "TRACE": {"binary_data": True}}
    assert head["parameters"]["sequence_id"] == 7 and head["parameters"]["sequence_start"] is True
    request = service_pb2.ModelInferRequest.FromString(encode_grpc(resolved, arrays, {**extra, "sequence_id": "s-1"},
                                                                   place))
    assert request.parameters["sequence_id"].string_param == "s-1"
    assert request.parameters["sequence_start"].bool_param is True
    assert not request.raw_input_contents
    assert request.inputs[0].parameters["shared_memory_region"].string_param == "r"
    assert request.outputs[0].parameters["shared_memory_offset"].int64_param == 16


class FakeControl(ShmControl):
    """A server's registration tables by kind; refuses ``refuse`` times with Triton's in-use text, or always when
    ``down``."""

    def __init__(self, refuse: int = 0, down: bool = False) -> None:
        super().__init__(None)
        self.table: dict[str, dict[str, int]] = {"system": {}, "cuda": {}}
        self.refuse = refuse
        self.down = down
        self.closed = False

    def register(self, region: Region) -> None:
        if self.down:
            raise ConnectionError("server gone")
        self.table[region.kind][region.name] = region.byte_size

    def unregister(self, name: str, kind: str = "system") -> None:
        if self.refuse:
            self.refuse -= 1
            raise RuntimeError(f"Cannot unregister shared memory region '{name}', it is currently in use.")
        self.table[kind].pop(name, None)

    def registered(self, kind: str = "system") -> list[str]:
        return list(self.table[kind])

    def close(self) -> None:
        self.closed = True


def test_registry_unlinks_on_failure_retries_in_use_and_reports_leftovers(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = []
    registry = ShmRegistry(lambda _name, rec: records.append(rec))
    server = FakeControl(refuse=2)
    registry.make_control = lambda: server
    region = registry.create(64, server, contents=[np.arange(4, dtype=np.float32)])
    assert (shmio.SHM_DIR / region.name).read_bytes()[:16] == np.arange(4, dtype=np.float32).tobytes()
    registry.release(region)
    assert not (shmio.SHM_DIR / region.name).exists() and not server.table["system"]
    with pytest.raises(ConnectionError):
        registry.create(64, FakeControl(down=True))
    assert not list(shmio.SHM_DIR.glob(f"{registry.prefix}*"))
    registry.close_all()
    events = [r["event"] for r in records]
    assert events == ["create", "register", "unregister", "destroy", "create", "error", "destroy", "status"]
    assert records[2]["detail"] == "refused 2 times while in use"
    assert records[-1]["registered_left"] == 0 and records[-1]["files_left"] == 0
    assert {r["kind"] for r in records} == {"system"}
    verdicts = ShmRegionsCheck().evaluate(RunInputs(shm_records=records))
    assert [v.status for v in verdicts] == [PASS]


class MemoryKind(ShmKind):
    """A kind whose regions are bytearrays, so the registry's shared steps run without a GPU (``cuda``'s calls are
    exercised by tests/test_gpu_shm.py)."""

    name = "cuda"

    def __init__(self) -> None:
        self.freed: list[str] = []

    def allocate(self, name: str, byte_size: int, device: int) -> tuple[Any, str]:
        return bytearray(byte_size), ""

    def fill(self, handle: Any, arrays: list[np.ndarray]) -> None:
        data = b"".join(a.tobytes() for a in arrays)
        handle[:len(data)] = data

    def free(self, handle: Any) -> None:
        self.freed.append(bytes(handle[:4]).hex())


def test_registry_keeps_cuda_regions_apart_and_reports_what_each_kind_left() -> None:
    kind = MemoryKind()
    records: list[dict[str, Any]] = []
    registry = ShmRegistry(lambda _name, rec: records.append(rec), kinds={**KINDS, "cuda": kind})
    server = FakeControl()
    registry.make_control = lambda: server
    gpu = registry.create(8, server, kind="cuda", device=1, contents=[np.array([7, 9], np.int16)])
    assert bytes(gpu.handle[:4]) == np.array([7, 9], np.int16).tobytes()
    host = registry.create(8, server)
    registry.write(gpu, [np.array([1, 2], np.int16)])
    assert bytes(gpu.handle[:4]) == np.array([1, 2], np.int16).tobytes()
    assert (gpu.kind, gpu.device, gpu.key, host.key) == ("cuda", 1, "", f"/{host.name}")
    assert server.table == {"system": {host.name: 8}, "cuda": {gpu.name: 8}}
    registry.release(gpu)
    assert kind.freed == [np.array([1, 2], np.int16).tobytes().hex()] and gpu.handle is None
    assert server.table["cuda"] == {}
    server.table["cuda"]["rmt_stray"] = 4  # not under this process's prefix: never counted
    server.table["cuda"][f"{registry.prefix}99"] = 4  # under it and left registered
    registry.close_all()
    assert not list(shmio.SHM_DIR.glob(f"{registry.prefix}*"))
    assert [(r["kind"], r["detail"]) for r in records if r["event"] == "create"] == [("cuda", "device 1"),
                                                                                  ("system", "")]
    status = records[-1]
    assert status["event"] == "status" and status["kind"] == "cuda,system"
    assert status["registered_left"] == 1 and status["detail"] == f"{registry.prefix}99"
    verdict = ShmRegionsCheck().evaluate(RunInputs(shm_records=records))[0]
    assert verdict.status == FAIL and verdict.evidence["created_by_kind"] == {"cuda": 1, "system": 1}

    del server.table["cuda"][f"{registry.prefix}99"]
    registry.create(8, server, kind="cuda", contents=[np.zeros(2, np.int16)])
    with pytest.raises(ConnectionError):  # a refused registration frees the device region at once
        registry.create(8, FakeControl(down=True), kind="cuda")
    registry.close_all()
    second = records[records.index(status) + 1:]
    assert [r["event"] for r in second] == ["create", "register", "create", "error", "destroy", "unregister",
                                            "destroy", "status"]
    assert second[-1]["kind"] == "cuda" and second[-1]["registered_left"] == 0 and len(kind.freed) == 3
    passed = ShmRegionsCheck().evaluate(RunInputs(shm_records=second))[0]
    assert passed.status == PASS and "every region rmt created (2 cuda)" in passed.explanation


def test_shm_records_without_a_kind_are_system_regions() -> None:
    old = _shm([("create", "a"), ("register", "a"), ("unregister", "a"), ("destroy", "a")],
               {"registered_left": 0, "files_left": 0})
    verdict = ShmRegionsCheck().evaluate(RunInputs(shm_records=old))[0]
    assert verdict.status == PASS and verdict.evidence["created_by_kind"] == {"system": 1}


def _shm(events: list[tuple[str, str]], status: dict[str, int] | None) -> list[dict[str, Any]]:
    out = [{"event": e, "region": r, "byte_size": 8} for e, r in events]
    if status is not None:
        out.append({"event": "status", "region": "rmt_1_", **status})
    return out


def test_shm_regions_fails_on_anything_left_and_cannot_judge_without_status() -> None:
    clean = _shm([("create", "a"), ("register", "a"), ("unregister", "a"), ("destroy", "a")],
                 {"registered_left": 0, "files_left": 0})
    kept = _shm([("create", "a"), ("register", "a"), ("destroy", "a")], {"registered_left": 1, "files_left": 0})
    unknown = _shm([("create", "a"), ("destroy", "a")], {"registered_left": -1, "files_left": 0})
    check = ShmRegionsCheck()
    assert check.evaluate(RunInputs(shm_records=clean))[0].status == PASS
    bad = check.evaluate(RunInputs(shm_records=kept))[0]
    assert bad.status == FAIL and bad.measured == 2 and bad.evidence["still_registered"] == ["a"]
    assert check.evaluate(RunInputs(shm_records=unknown))[0].status == SKIP
    assert check.evaluate(RunInputs(shm_records=clean[:-1]))[0].status == SKIP  # never drained: no status
    grow = MemorySeries("shm_allocated_bytes{prefix=x}", np.arange(5.0), np.arange(5.0),
                        np.array([1, 1, 2, 3, 4]) * 2.0**20, "pool")
    assert [v.status for v in ShmBackendGrowthCheck().evaluate(RunInputs(memory=[grow]))] == [FAIL]
    loose = ShmBackendGrowthCheck({"max_growth": "4MiB"})
    assert [v.status for v in loose.evaluate(RunInputs(memory=[grow]))] == [PASS]


def _sequences(model: str, probes: list[str]) -> list[dict[str, Any]]:
    base = 10**18
    out = [{"model": model, "outcome": "ended", "start_ns": base + i, "last_ns": base + 10**6 + i, "probe": "",
            "idle_us": 300000, "probe_after_s": 0.5} for i in range(10)]
    out += [{"model": model, "outcome": "abandoned", "start_ns": base + i, "last_ns": base + 10**6 + i,
             "probe_ns": base + 9 * 10**8 + i, "probe": p, "idle_us": 300000, "probe_after_s": 0.5}
            for i, p in enumerate(probes)]
    return out


def test_sequence_slots_fails_when_an_abandoned_sequence_outlives_the_idle_timeout() -> None:
    check = SequenceSlotsCheck()
    run = RunInputs(sequences=_sequences("m", ["reclaimed"] * 8) + _sequences("n", ["reclaimed"] * 7 + ["live"]),
                    configs={"m": ZOO["seq_state"]})
    verdicts = {v.subject: v for v in check.evaluate(run)}
    assert verdicts["m"].status == PASS and verdicts["n"].status == FAIL and verdicts["n"].measured == 1
    assert verdicts["m"].evidence["slots"] == 64 and verdicts["m"].evidence["peak_open_sequences"] == 18
    few = check.evaluate(RunInputs(sequences=_sequences("m", ["reclaimed"] * 2)))
    assert few[0].status == SKIP and "too little data" in few[0].explanation
    assert peak_open([(0, 10), (5, 15), (10, 20)]) == 2
    assert sequence_slots(ZOO["probe"]) is None


def _counter(measure: str, model: str, values: list[float]) -> CounterSeries:
    return CounterSeries(measure, model, np.arange(len(values), dtype=float), np.asarray(values, dtype=float))


def test_cache_hit_ratio_compares_triton_counters_with_the_intended_mix() -> None:
    traffic = {"patterns": {"h": {"cache": {"hit_ratio": 0.8, "repeated": 4}}}}
    w = windows("cached/p0/h", "cached", seconds=10, rate_per_s=100)
    w.pattern = "h"
    sent = float(np.sum(w.requests))

    def run(hit_share: float) -> RunInputs:
        return RunInputs(traffic=traffic, windows=[w], counters=[
            _counter("nv_cache_num_hits_per_model", "cached", [0, sent * hit_share]),
            _counter("nv_cache_num_misses_per_model", "cached", [0, sent * (1 - hit_share)])])

    check = CacheHitRatioCheck()
    assert check.evaluate(run(0.79))[0].status == PASS
    assert check.evaluate(run(0.0))[0].status == FAIL  # no cache on the server: nothing hits
    assert check.evaluate(RunInputs(traffic=traffic, windows=[w]))[0].status == SKIP


def test_cache_bounded_fails_on_late_growth_or_growth_beyond_the_cache() -> None:
    t = np.arange(20.0)
    misses = _counter("nv_cache_num_misses_per_model", "cached", list(t * 100))

    def server(values: np.ndarray) -> MemorySeries:
        return MemorySeries("process_rss_bytes{name=tritonserver,role=server}", t, t * 100, values)

    plateau = 100e6 + np.minimum(t, 5) * 1e6
    check = CacheBoundedCheck()
    ok = RunInputs(memory=[server(plateau)], counters=[misses], cache_size_bytes=8 * 2**20)
    assert check.evaluate(ok)[0].status == PASS
    rising = RunInputs(memory=[server(100e6 + t * 1e6)], counters=[misses], cache_size_bytes=8 * 2**20)
    assert check.evaluate(rising)[0].status == FAIL
    assert check.evaluate(RunInputs(memory=[server(plateau)], counters=[misses]))[0].status == SKIP


def test_composing_models_are_charged_to_their_callers() -> None:
    ens = windows("ensemble_pair/p0/d", "ensemble_pair", seconds=5, rate_per_s=10)
    bls = windows("bls/p0/d", "bls", seconds=5, rate_per_s=10)
    counters = [_counter("nv_inference_request_success", m, [0, 1000, 2000, 3000])
                for m in ("ensemble_pair", "bls", "ens_first", "ens_second", "callee")]
    counters.append(_counter("nv_inference_request_success", "idle", [5, 5, 5, 5]))
    run = RunInputs(windows=[ens, bls], counters=counters, configs={"ensemble_pair": ZOO["ensemble_pair"]})
    assert composing_parents(run) == {"ens_first": ["ensemble_pair"], "ens_second": ["ensemble_pair"],
                                      "callee": ["bls"]}
    t = np.linspace(0, 3, 200)

    def stub(model: str, per_request: float) -> MemorySeries:
        done = np.interp(t, np.arange(4.0), [0, 1000, 2000, 3000])
        return MemorySeries(f"process_rss_bytes{{model={model}}}", t, done, 1e8 + per_request * done, "memory",
                            model)

    run.memory = [stub("ens_first", 0.0), stub("ens_second", 65536.0), stub("callee", 0.0)]
    verdicts = {v.subject.split(" <- ")[0]: v for v in ComposingAttributionCheck().evaluate(run)}
    assert verdicts["process_rss_bytes{model=ens_second}"].status == FAIL
    assert verdicts["process_rss_bytes{model=ens_first}"].status == PASS
    assert verdicts["process_rss_bytes{model=callee}"].evidence["parents"] == ["bls"]
