"""Streaming without a server: the pattern's stream section, cancel plans, window merging of the stream counters,
outcome attribution, first_response and stream_completeness on synthetic windows (each FAILS and PASSES)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from rmt.check.attribution import LeakAttributionCheck
from rmt.check.base import FAIL, PASS, SKIP
from rmt.check.data import RunInputs, StreamWindows
from rmt.check.inputs import promised_responses, stream_windows
from rmt.check.latency import histogram_of
from rmt.check.sched_checks import StarvationCheck
from rmt.check.stream_checks import FirstResponseCheck, StreamCompletenessCheck
from rmt.core.errors import ConfigError
from rmt.core.scenario import StreamSpec, parse_scenario
from rmt.core.windows import WindowState, record_dict
from rmt.load.streamwire import NO_CANCEL, CancelPlan, StreamResult, draw_cancel
from rmt.load.windows import WindowBook
from rmt.run.definition import load_definition, retarget
from rmt.webui.plugin import RmtWebUI
from tests.test_check_more import model_memory, stream

NS = 1_000_000_000


def _scenario(stream_section: Any) -> Any:
    return parse_scenario({"patterns": {"s": {"shape": [4], "stream": stream_section}},
                           "streams": [{"model": "stream_n", "pattern": "s"}]})


def test_stream_section_parses_and_bad_values_name_the_fix() -> None:
    spec = _scenario({"cancel_share": 0.25, "cancel_after_responses": 2, "responses": 8}).pattern("s").stream
    assert spec == StreamSpec(0.25, 2, 0.0, 8)
    assert _scenario({}).pattern("s").stream == StreamSpec()
    with pytest.raises(ConfigError, match="needs cancel_after_responses or cancel_after_ms"):
        _scenario({"cancel_share": 0.5})
    with pytest.raises(ConfigError, match="between 0 and 1"):
        _scenario({"cancel_share": 1.5, "cancel_after_ms": 3})
    with pytest.raises(ConfigError, match="unknown key 'cancel'"):
        _scenario({"cancel": 1})


def test_cancel_share_is_drawn_per_request() -> None:
    rng = random.Random(1)
    spec = StreamSpec(0.3, 2, 5.0)
    plans = [draw_cancel(spec, rng) for _ in range(4000)]
    assert sum(p.active for p in plans) / len(plans) == pytest.approx(0.3, abs=0.03)
    assert {p for p in plans if p.active} == {CancelPlan(2, 5.0)}
    assert draw_cancel(None, rng) is NO_CANCEL and draw_cancel(StreamSpec(), rng) is NO_CANCEL


def test_cancel_plan_by_count_and_by_time() -> None:
    result = StreamResult()
    result.response(1_000, 10)
    assert not result.should_cancel(CancelPlan(2, 0), 0, 1_000)
    result.response(3_000, 10)
    assert result.should_cancel(CancelPlan(2, 0), 0, 3_000)
    assert result.gaps_us == [2.0] and result.first_ns == 1_000
    assert result.should_cancel(CancelPlan(0, 1.0), 0, 1_000_000) and not result.should_cancel(CancelPlan(0, 1.0), 0,
                                                                                               999_999)


def _result(responses: int, *, cancelled: bool = False, outcome: int = 0, final: bool = True) -> StreamResult:
    r = StreamResult(outcome=outcome, cancelled=cancelled, final=final and not cancelled)
    for i in range(responses):
        r.response(1_000_000 + i * 2_000_000, 100)
    return r


def test_stream_windows_merge_exactly_across_processes() -> None:
    skey = ("grpc", "stream_n/p1/s", "main")
    books = [WindowBook(), WindowBook()]
    for k, book in enumerate(books):
        for i in range(10):
            book.on_sent(skey, 5 * NS)
            result = _result(8) if i % 2 else _result(2, cancelled=True)
            book.on_stream_done(skey, result, 1, 0, 500_000, 20_000_000 + k, 5 * NS + 1)
    merged: WindowState | None = None
    for book in books:
        for state in book.close(6 * NS).values():
            state = WindowState.from_wire(state.to_wire())
            if merged is None:
                merged = state
            else:
                merged.merge(state)
    assert merged is not None
    record = record_dict(merged.to_record((5 * NS, *skey)))
    assert (record["sent"], record["succeeded"], record["cancelled"]) == (20, 10, 10)
    assert record["responses"] == 10 * 8 + 10 * 2 and record["completed_responses"] == 80
    assert record["finals"] == 10 and record["in_flight"] == 0 and record["processes"] == 2
    assert record["latency_p50_us"] == pytest.approx(1000, rel=0.01)  # time to the first response
    assert record["gap_p99_us"] == pytest.approx(2000, rel=0.01)
    (windows,) = stream_windows([record])
    assert windows.streaming and windows.requests.sum() == 20 and windows.gap_us.get_total_count() == 10 * 7 + 10


def test_an_unanswered_cancelled_stream_has_no_first_response_latency() -> None:
    book = WindowBook()
    skey = ("http", "m/p0/s", "main")
    book.on_sent(skey, NS)
    book.on_stream_done(skey, _result(0, cancelled=True), 1, 0, 0, 5_000_000, NS)
    (state,) = book.close(2 * NS).values()
    assert state.latency.get_total_count() == 0 and state.service.get_total_count() == 1


PHASES = [("complete", 0, 20), ("cancel", 20, 20)]


def _streaming(model: str, pattern: str, cancel_share: float) -> StreamWindows:
    w = stream(model, pattern, PHASES, 40)
    sent = np.asarray(w.sent)
    w.cancelled = np.round(sent * cancel_share)
    w.completed = sent - w.cancelled
    w.responses = w.completed * 8 + w.cancelled * 2
    w.finals = w.completed.copy()
    w.completed_responses = w.completed * 8
    return w


def test_leak_attribution_pins_the_leak_on_cancelled_requests() -> None:
    ws = [_streaming("slc", "complete", 0.0), _streaming("slc", "cancel", 0.8)]
    leak = {"cancel": 0.8 * 256 * 1024}  # 256 KiB per cancelled request (80 % of the pattern's requests)
    run = RunInputs(windows=ws, memory=[model_memory("slc", ws, leak)])
    by = {v.subject.rsplit(" / ", 1)[1]: v for v in LeakAttributionCheck().evaluate(run)}
    assert by["outcome:cancelled"].status == FAIL
    assert by["outcome:cancelled"].evidence["bytes_per_request"] == pytest.approx(256 * 1024, rel=0.1)
    assert "requests cancelled" in by["outcome:cancelled"].explanation
    assert by["outcome:completed"].status == PASS and by["cancel"].status == FAIL and by["complete"].status == PASS
    healthy = RunInputs(windows=ws, memory=[model_memory("slc", ws, {})])
    assert {v.status for v in LeakAttributionCheck().evaluate(healthy)} == {PASS}


def test_stream_completeness_fails_on_lost_finals_and_short_streams() -> None:
    good = _streaming("m", "cancel", 0.5)
    run = RunInputs(windows=[good], promised_responses={"cancel": 8})
    assert [v.status for v in StreamCompletenessCheck().run(run)] == [PASS]
    lost = _streaming("m", "cancel", 0.5)
    lost.finals = np.asarray(lost.finals) - (np.arange(len(lost.t_s)) == 25)  # one request never ended
    (verdict,) = StreamCompletenessCheck().run(RunInputs(windows=[lost]))
    assert verdict.status == FAIL and verdict.measured == 1
    short = _streaming("m", "cancel", 0.5)
    short.completed_responses = np.asarray(short.completed_responses) - 1 * (np.arange(len(short.t_s)) == 30)
    (verdict,) = StreamCompletenessCheck().run(RunInputs(windows=[short], promised_responses={"cancel": 8}))
    assert verdict.status == FAIL and "promised" in verdict.explanation
    assert [v.status for v in StreamCompletenessCheck().run(RunInputs())] == [SKIP]


def test_first_response_judges_p99_per_model_and_priority() -> None:
    fast, slow = _streaming("m", "complete", 0.0), _streaming("m", "cancel", 0.5)
    fast.priority, slow.priority = 1, 2
    fast.latency_steady = histogram_of(np.full(200, 5_000.0))
    slow.latency_steady = histogram_of(np.full(200, 400_000.0))
    verdicts = {v.subject: v for v in FirstResponseCheck({"p99_ms": 100}).run(RunInputs(windows=[fast, slow]))}
    assert verdicts["m/p1"].status == PASS and verdicts["m/p2"].status == FAIL
    assert verdicts["m/p2"].measured == pytest.approx(400_000, rel=0.01)
    assert [v.subject for v in FirstResponseCheck({"models": "x*, y"}).run(RunInputs(windows=[fast]))] == ["-"]
    few = _streaming("m", "complete", 0.0)
    few.latency_steady = histogram_of([1000.0] * 5)
    (verdict,) = FirstResponseCheck().run(RunInputs(windows=[few]))
    assert verdict.status == SKIP and "too little data" in verdict.explanation


def test_promised_responses_come_from_the_scenario() -> None:
    traffic = {"patterns": {"a": {"stream": {"responses": 8}}, "b": {"stream": {}}, "c": {"shape": [4]}}}
    assert promised_responses(traffic) == {"a": 8, "b": 0}


def test_webui_rows_for_streams_from_events_and_worker_windows() -> None:
    now = [100.5]
    ui = RmtWebUI(clock=lambda: now[0])
    for i in range(20):
        now[0] = 97.0 + i * 0.1
        ui.on_request("gRPC stream", "sn/p1/s", response_time=20.0, exception=None,
                      context={"responses": 2 if i % 2 else 8, "outcome": "cancelled" if i % 2 else "ok",
                               "first_response_ms": 0.5})
    book = WindowBook()
    skey = ("grpc", "sn/p2/s", "main")
    for _ in range(10):
        book.on_sent(skey, 97 * NS)
        book.on_stream_done(skey, _result(8), 1, 0, 0, 30_000_000, 97 * NS)
    (state,) = book.close(98 * NS).values()
    ui.on_worker_report("w1", {"rmt": {"windows": [[[97 * NS, *skey], state.to_wire()]]}})
    now[0] = 101.2
    rows = {r["subject"]: r for r in ui.refresh() if r["section"] == "stream"}
    assert rows["sn/p1/s"]["delta"] == "10 completed, 10 cancelled, 0 failed, 100 responses"
    assert rows["sn/p1/s"]["latency"] == "first response 500 µs / 500 µs"
    assert rows["sn/p2/s"]["delta"] == "10 completed, 0 cancelled, 0 failed, 80 responses"
    assert "responses/s" in rows["sn/p2/s"]["now"]


def test_starvation_counts_cancelled_streams_as_served() -> None:
    w = _streaming("m", "cancel", 1.0)  # every request of the pattern cancelled by the client after 2 responses
    w.pending = np.where(np.asarray(w.sent) > 0, 2.0, 0.0)
    (verdict,) = [v for v in StarvationCheck().run(RunInputs(windows=[w]))]
    assert verdict.status == PASS
    w.cancelled = np.zeros(len(w.t_s))  # the same windows with nothing answered: starved
    (verdict,) = [v for v in StarvationCheck().run(RunInputs(windows=[w]))]
    assert verdict.status == FAIL


def test_a_streaming_scenario_retargeted_keeps_streaming() -> None:
    streaming = retarget(load_definition("streaming"), ["llm"])
    traffic = parse_scenario(streaming.raw)
    assert {s.model for s in traffic.streams} == {"llm"} and traffic.pattern("stream").stream == StreamSpec()
    assert {s.pattern for s in traffic.streams} == {"stream"}
    unary = parse_scenario(retarget(load_definition("memory_growth"), ["m"]).raw)
    assert {s.pattern for s in unary.streams} == {"default"}
