"""The master's merge path: histograms added from their wire form equal hdrh's own decode-and-add, exactly."""

from __future__ import annotations

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from rmt.core.hdr import HIGHEST_US, decode_histogram, encode_histogram, new_histogram
from rmt.core.hdrwire import add_encoded
from rmt.core.windows import WindowState

values = st.lists(st.integers(1, HIGHEST_US), max_size=40)


def _hist(vals: list[int]) -> HdrHistogram:
    h = new_histogram()
    for v in vals:
        h.record_value(v)
    return h


@settings(max_examples=60, deadline=None)
@given(start=values, blobs=st.lists(values, min_size=1, max_size=4))
def test_add_encoded_equals_decode_and_add(start: list[int], blobs: list[list[int]]) -> None:
    ours, theirs = _hist(start), _hist(start)
    for vals in blobs:
        text = encode_histogram(_hist(vals))
        add_encoded(ours, text)
        if text:
            theirs.decode_and_add(text.encode("ascii"))
    assert ours.encode() == theirs.encode()
    assert (ours.get_total_count(), ours.get_min_value(), ours.get_max_value()) == (
        theirs.get_total_count(), theirs.get_min_value(), theirs.get_max_value())
    assert ours.get_value_at_percentile(99.9) == theirs.get_value_at_percentile(99.9)


def test_a_histogram_of_another_layout_takes_hdrhs_path() -> None:
    other = HdrHistogram(1, 1_000_000, 2)
    other.record_value(1234)
    target = new_histogram()
    add_encoded(target, other.encode().decode("ascii"))
    assert target.get_total_count() == 1 and abs(target.get_max_value() - 1234) <= 1234 * 0.01


@settings(max_examples=30, deadline=None)
@given(parts=st.lists(st.tuples(st.lists(st.integers(0, 50), min_size=len(WindowState.COUNTERS),
                                                max_size=len(WindowState.COUNTERS)), values), min_size=1,
                      max_size=5))
def test_merge_wire_equals_merge(parts: list[tuple[list[int], list[int]]]) -> None:
    states = []
    for counts, lat in parts:
        s = WindowState()
        s.counts = counts
        s.in_flight, s.in_flight_max, s.traced = counts[0], counts[1], counts[2]
        for v in lat:
            s.latency.record_value(v)
            s.service.record_value(v)
            s.gap.record_value(v)
        states.append(s)
    by_state = WindowState.from_wire(states[0].to_wire())
    by_wire = WindowState.from_wire(states[0].to_wire())
    for s in states[1:]:
        by_state.merge(WindowState.from_wire(s.to_wire()))
        by_wire.merge_wire(s.to_wire())
    key = (1_000_000_000, "http", "m/p0/x", "p")
    assert by_wire.to_record(key) == by_state.to_record(key)
    assert by_wire.processes == len(parts)
    assert decode_histogram(encode_histogram(by_wire.latency)).get_total_count() == sum(len(lat) for _, lat in parts)
