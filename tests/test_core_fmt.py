"""The one byte and duration formatter: units picked by magnitude, sign kept, missing values as ``-``."""

from __future__ import annotations

import math

from rmt.core.fmt import format_bytes, format_us


def test_bytes_pick_the_largest_binary_unit_and_keep_the_sign() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(-3 * 2**20) == "-3.00 MiB"
    assert format_bytes(5 * 2**30, ".4g") == "5 GiB"
    assert format_bytes(None) == format_bytes(math.nan) == format_bytes(math.inf) == "-"


def test_durations_in_us_become_ms_and_s() -> None:
    assert format_us(840) == "840 µs"
    assert format_us(1500) == "1.5 ms"
    assert format_us(2_250_000) == "2.25 s"
    assert format_us(-1500) == "-1.5 ms"
    assert format_us(None) == format_us(math.nan) == "-"
