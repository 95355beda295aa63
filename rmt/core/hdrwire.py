"""Adding a histogram in HDR's wire form into another, exactly, without building a histogram for it.

``HdrHistogram.decode_and_add`` allocates a whole histogram per blob (21 504 eight-byte counters for rmt's
1 µs – 10 min range at 3 digits) and adds every counter of it, although a window's blob holds a few hundred non-zero
counters. The master merges one blob per worker, stream and second (two histograms each), so that cost
bounds how many workers one master keeps up with (benchmarks/bench_master.py). :func:`add_encoded` decodes the
varint counters with hdrh's own C codec into a reused scratch array, adds only the decoded index range into the
target with hdrh's C ``add_array``, and zeroes that range again: the same counters, total, min and max as
``decode_and_add`` (a test compares both), at a fraction of the cost (docs/benchmarks.md, master).
"""

from __future__ import annotations

import ctypes
import threading

from hdrh.codec import HdrHistogramEncoder, payload_header_size
from hdrh.histogram import HdrHistogram
from pyhdrh import add_array, decode

_WORD = 8
"""Counter size of the decoded payload (V2 blobs decode to 8-byte counters)."""
_local = threading.local()


def _scratch(counts_len: int) -> ctypes.Array[ctypes.c_ulonglong]:
    """This thread's zeroed scratch counters of ``counts_len`` (kept zero between calls)."""
    arr = getattr(_local, "arr", None)
    if arr is None or len(arr) != counts_len:
        arr = _local.arr = (ctypes.c_ulonglong * counts_len)()
    return arr


def add_encoded(hist: HdrHistogram, text: str | bytes) -> None:
    """Add the histogram ``text`` (HDR's base64 V2 form, '' for empty) into ``hist``, as ``decode_and_add`` would."""
    if not text:
        return
    blob = text.encode("ascii") if isinstance(text, str) else text
    payload = HdrHistogramEncoder.decode(blob)
    head = payload.payload
    if (hist.word_size != _WORD or head.lowest_trackable_value != hist.lowest_trackable_value
            or head.highest_trackable_value != hist.highest_trackable_value
            or head.significant_figures != hist.significant_figures):
        hist.decode_and_add(blob)  # another layout: hdrh's general path
        return
    scratch = _scratch(hist.counts_len)
    base = ctypes.addressof(scratch)
    found = decode(payload._data, payload_header_size, base, hist.counts_len, _WORD)
    lo, hi, total = int(found["min_nonzero_index"]), int(found["max_nonzero_index"]), int(found["total"])
    if hi < 0 or total == 0:
        return
    first = 0 if lo < 0 else lo
    span = hi - first + 1
    target = ctypes.addressof(hist.encoder.get_counts())
    add_array(target + first * _WORD, base + first * _WORD, span, _WORD)
    zero_at_0 = scratch[0] > 0
    ctypes.memset(base + first * _WORD, 0, span * _WORD)
    # what HdrHistogram.add does with the decoded histogram's total, max and min
    other_max = hist.get_highest_equivalent_value(hist.get_value_from_index(hi))
    other_min = 0 if zero_at_0 else hist.get_lowest_equivalent_value(hist.get_value_from_index(first))
    hist.total_count += total
    hist.max_value = max(hist.max_value, other_max)
    hist.min_value = min(hist.get_min_value(), other_min)
