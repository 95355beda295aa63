"""rmt.load pure parts: scenario parsing, schedules, payload encoding, window merging (no server)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from rmt.core.errors import ConfigError
from rmt.core.measures import MEASURES
from rmt.core.modelconfig import load_config_pbtxt
from rmt.core.resources import ZOO_REPOSITORY
from rmt.core.rundir import FILES
from rmt.core.scenario import parse_scenario
from rmt.core.windows import LoadWindow, WindowState
from rmt.load.payloads import ID_WIDTH, build_pool, grpc_id_field, resolve_stream
from rmt.load.schedule import ArrivalProcess, PhaseClock, StreamPicker
from rmt.load.transport import classify_server_error, http_trace
from rmt.load.windows import WindowBook

PROBE = load_config_pbtxt(ZOO_REPOSITORY / "probe" / "config.pbtxt")


@pytest.mark.parametrize(("scenario", "expected"), [
    ({}, "no streams"),
    ({"streams": [{"model": "probe", "pattern": "nope"}]}, "define it under 'patterns'"),
    ({"streams": [{"model": "probe", "weight": -1}]}, "streams[0].weight = -1"),
    ({"streams": [{"model": "probe"}], "patterns": {"p": {"shape": {"uniform": [9, 3]}}}}, "lo must not exceed hi"),
    ({"streams": [{"model": "probe"}], "patterns": {"p": {"shape": [0]}}}, "positive integers"),
    ({"streams": [{"model": "probe"}], "mode": "open"}, "without a rate"),
    ({"streams": [{"model": "probe"}], "phases": [{"name": "a"}, {"name": "b"}]}, "only the last phase"),
    ({"streams": [{"model": "probe"}], "phases": [{"name": "a", "weights": {"x": 1}}]}, "no stream or model 'x'"),
    ({"streams": [{"model": "probe"}], "colour": 1}, "unknown key 'colour'"),
    ({"streams": [{"model": "probe"}, {"model": "probe"}]}, "appears twice"),
])
def test_bad_scenarios_are_one_line_config_errors(scenario: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_scenario(scenario)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_phase_clock_and_weights() -> None:
    scenario = parse_scenario({"streams": [{"model": "a"}, {"model": "b", "weight": 3}],
                               "phases": [{"name": "w", "duration_s": 2, "weights": {"a": 1}},
                                          {"name": "m", "duration_s": 3}]})
    clock = PhaseClock(scenario.phases)
    assert [clock.index_at(t) for t in (0, 1.9, 2.0, 4.9, 5.0)] == [0, 0, 1, 1, None]
    assert scenario.stream_weights(scenario.phases[0]) == [1.0, 0.0]
    picker = StreamPicker(scenario, random.Random(1))
    assert {picker.pick(0) for _ in range(200)} == {0}
    picks = [picker.pick(1) for _ in range(20000)]
    assert picks.count(1) / len(picks) == pytest.approx(0.75, abs=0.02)


@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_arrivals_follow_each_phase_rate_and_split_across_workers(arrival: str) -> None:
    scenario = parse_scenario({"mode": "open", "arrival": arrival, "rate_per_s": 0, "streams": [{"model": "a"}],
                               "phases": [{"name": "lo", "duration_s": 20, "rate_per_s": 100},
                                          {"name": "off", "duration_s": 5, "rate_per_s": 0},
                                          {"name": "hi", "duration_s": 20, "rate_per_s": 400}]})
    counts = {0: 0, 1: 0, 2: 0}
    for rank in range(2):  # two workers, each with half the rate
        process = ArrivalProcess(scenario, 0.5, random.Random(rank), offset=rank / 2)
        last = -1.0
        while (nxt := process.next()) is not None:
            t, phase = nxt
            assert t >= last
            last = t
            counts[phase] += 1
    tolerance = 0.01 if arrival == "constant" else 0.06
    assert counts[0] == pytest.approx(2000, rel=tolerance)
    assert counts[1] == 0
    assert counts[2] == pytest.approx(8000, rel=tolerance)


def _fill(book: WindowBook, rng: random.Random, n: int, base_ns: int) -> None:
    for i in range(n):
        skey = ("http", rng.choice(["probe/p0/a", "probe/p1/b"]), "main")
        t = base_ns + rng.randrange(3_000_000_000)
        book.on_sent(skey, t)
        book.on_done(skey, rng.choice([0, 0, 0, 1, 2]), 2, rng.uniform(10, 5e5), rng.uniform(5, 1e5), t + 1000)
        if i % 10 == 0:
            book.on_dropped(skey, i % 20 == 0, t)


def test_windows_merge_exactly_across_processes() -> None:
    base = 1_700_000_000 * 1_000_000_000
    one, a, b = WindowBook(), WindowBook(), WindowBook()
    _fill(one, random.Random(5), 2000, base)
    rng = random.Random(5)
    _fill(a, rng, 1000, base)
    _fill(b, rng, 1000, base)
    merged: dict[Any, WindowState] = {}
    for book in (a, b):
        for key, state in book.close(base + 10**10, final=True).items():
            state = WindowState.from_wire(json.loads(json.dumps(state.to_wire())))  # the wire round trip
            if key in merged:
                merged[key].merge(state)
            else:
                merged[key] = state
    single = one.close(base + 10**10, final=True)
    assert set(merged) == set(single)
    for key, state in single.items():
        assert merged[key].counts == state.counts
        assert merged[key].latency.get_total_count() == state.latency.get_total_count()
        assert merged[key].latency.get_value_at_percentile(99) == state.latency.get_value_at_percentile(99)
        record = merged[key].to_record(key)
        assert record.sent == record.succeeded + record.failed_timeout + record.failed_rejected
        assert record.inferences == 2 * record.succeeded


def test_window_book_hands_over_only_finished_seconds() -> None:
    book = WindowBook()
    skey = ("grpc", "m/p0/x", "main")
    book.on_sent(skey, 5_000_000_000)
    book.on_sent(skey, 6_100_000_000)
    assert [k[0] for k in book.close(6_500_000_000)] == [5_000_000_000]
    assert book.close(6_900_000_000) == {}
    assert book.in_flight == 2
    last = book.close(7_000_000_000)
    assert last[(6_000_000_000, skey[0], skey[1], skey[2])].in_flight == 2


def test_records_are_registered_and_documented() -> None:
    assert FILES["windows.jsonl"].record == "rmt.core.windows.LoadWindow"
    assert FILES["traces.jsonl"].record == "rmt.core.windows.ProbeTrace"
    assert {f"load.{name}" for name in WindowState.COUNTERS} <= set(MEASURES)
    assert all(MEASURES[f"load.{name}"].unit == "count" for name in WindowState.COUNTERS)
    assert set(WindowState.COUNTERS) <= set(LoadWindow.__dataclass_fields__)


def test_perf_analyzer_input_data_becomes_exact_http_and_grpc_bodies(tmp_path: Path) -> None:
    data = {"data": [{"INPUT0": [1.0, 2.0, 3.0]}, {"INPUT0": {"content": [4.0, 5.0, 6.0, 7.0], "shape": [4]}}]}
    (tmp_path / "in.json").write_text(json.dumps(data))
    scenario = parse_scenario({"streams": [{"model": "probe", "pattern": "pa", "priority": 0}],
                               "patterns": {"pa": {"data": {"input_data": str(tmp_path / "in.json")}}}})
    resolved = resolve_stream(scenario.streams[0], scenario.pattern("pa"), PROBE)
    assert resolved.traced
    http = build_pool(resolved, scenario, "http").http
    assert len(http) == 2
    header = json.loads(http[1].json_head + b"x" * ID_WIDTH + http[1].json_tail)
    assert header["inputs"][0]["shape"] == [1, 4]
    assert np.frombuffer(http[1].binary, np.float32).tolist() == [4.0, 5.0, 6.0, 7.0]
    body = build_pool(resolved, scenario, "grpc").grpc[0]
    request = service_pb2.ModelInferRequest.FromString(body + grpc_id_field(b"id-1"))
    assert request.id == "id-1" and request.model_name == "probe"
    assert np.frombuffer(request.raw_input_contents[0], np.float32).tolist() == [1.0, 2.0, 3.0]
    # The scenario ships the data itself to workers, not the path.
    assert scenario.raw["patterns"]["pa"]["data"]["input_data"]["data"] == data["data"]


def test_shape_distributions_stay_in_range() -> None:
    scenario = parse_scenario({"streams": [{"model": "probe", "pattern": "lu"}], "pool_bodies": 64,
                               "patterns": {"lu": {"shape": {"loguniform": [1, 4096]}, "batch_size": 3}}})
    pool = build_pool(resolve_stream(scenario.streams[0], scenario.pattern("lu"), PROBE), scenario, "http")
    sizes = [json.loads(b.json_head + b"x" * ID_WIDTH + b.json_tail)["inputs"][0]["shape"] for b in pool.http]
    assert all(s[0] == 3 and 1 <= s[1] <= 4096 for s in sizes)
    assert min(s[1] for s in sizes) < 64 < max(s[1] for s in sizes)  # log-uniform reaches both decades


def test_error_classification_and_trace_parsing() -> None:
    assert classify_server_error("Request timeout expired") == 1
    assert classify_server_error("[request id: x] Exceeds maximum queue size") == 2
    assert classify_server_error("INPUT0 has a negative element") == 3
    rows = np.arange(14, dtype=np.int64)
    header = json.dumps({"outputs": [{"name": "OUTPUT0", "parameters": {"binary_data_size": 8}},
                                     {"name": "TRACE", "parameters": {"binary_data_size": 112}}]}).encode()
    body = header + b"\0" * 8 + rows.tobytes()
    trace = http_trace(body, len(header))
    assert trace is not None and trace.shape == (2, 7) and trace[1, 0] == 7
