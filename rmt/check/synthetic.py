"""Synthetic run data with known truth, for the checkers' tests and benchmark (seeded, reproducible).

Memory: a server completing requests at a Poisson rate, sampled at 1 Hz, with Gaussian noise rounded to pages,
optionally a GC-like sawtooth (rise, then drop back to the floor) and a planted leak of ``leak_bytes_per_request``.
"""

from __future__ import annotations

import numpy as np

from rmt.check.data import InstanceTrace, MemorySeries, StreamWindows
from rmt.check.latency import histogram_of

PAGE = 4096


def memory_series(seed: int, *, samples: int = 300, requests: int = 12_000, leak_bytes_per_request: float = 0.0,
                  noise_bytes: float = 64 * 1024, sawtooth_bytes: float = 0.0,
                  sawtooth_period_requests: tuple[float, float] = (200.0, 2500.0), base_bytes: float = 200e6,
                  name: str = "rss_bytes", kind: str = "memory") -> MemorySeries:
    """A 1 Hz memory series over ``samples`` seconds in which about ``requests`` requests complete."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples, dtype=float)
    done = np.cumsum(rng.poisson(requests / samples, samples)).astype(float)
    values = base_bytes + leak_bytes_per_request * done + rng.normal(0.0, noise_bytes, samples)
    if sawtooth_bytes:
        period = rng.uniform(*sawtooth_period_requests)
        phase = rng.uniform(0.0, period)
        values += sawtooth_bytes * (((done + phase) % period) / period)
    return MemorySeries(name, t, done, np.floor(values / PAGE) * PAGE, kind)


def instance_trace(model: str, instance: str, start_ns: np.ndarray, duration_ns: int, device: int = 0
                   ) -> InstanceTrace:
    """Executions of ``duration_ns`` each, starting at ``start_ns``."""
    start = np.asarray(start_ns, dtype=np.int64)
    return InstanceTrace(model, instance, device, start, start + duration_ns)


def windows(stream: str, model: str, *, seconds: int, rate_per_s: float, seed: int = 0, priority: int | None = None,
            pending: float = 0.0, latency_us: float = 2000.0, first_us: list[float] | None = None,
            stall: tuple[int, int] | None = None) -> StreamWindows:
    """Per-second windows of one stream: Poisson completions, ``pending`` outstanding at each window's end.

    ``stall=(start, end)`` makes windows ``start..end-1`` complete nothing while requests are pending.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(seconds, dtype=float)
    done = rng.poisson(rate_per_s, seconds).astype(float)
    waiting = np.full(seconds, pending)
    if stall:
        done[stall[0]:stall[1]] = 0
        waiting[stall[0]:stall[1]] = max(pending, 1.0)
    lat = rng.gamma(4.0, latency_us / 4.0, 2000)
    return StreamWindows(stream, model, t, done.copy(), done, np.zeros(seconds), waiting, priority,
                         histogram_of(lat), None if first_us is None else np.asarray(first_us, dtype=float))
