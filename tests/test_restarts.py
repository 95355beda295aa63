"""A server restart seen in the run's own data: Triton's counters go back (or a new server PID appears), each memory
series is judged per server lifetime, and the run is incomplete; a long stretch without the server's RSS is a loss."""

from __future__ import annotations

import numpy as np

from rmt.check.data import MemorySeries
from rmt.check.restarts import RESTART, SERVER_GAP, per_lifetime, restart_losses, restart_times, server_gaps
from rmt.core.samples import Series

S = 1_000_000_000
T0 = 1_800_000_000 * S


def _series(sid: int, measure: str, labels: dict[str, str], t_s: np.ndarray, values: np.ndarray) -> Series:
    t = (T0 + t_s * S).astype(np.int64)
    return Series("local", sid, "x", measure, labels, t, t, values.astype(float))


def test_a_new_server_pid_is_a_restart_and_memory_is_split_per_lifetime() -> None:
    t = np.arange(0.0, 40.0, 0.5)
    served = np.where(t < 20, t * 100, (t - 21) * 100 + 5)  # counts from ~0 again after the restart at 20.5 s
    old_pid = np.where(t < 20, 200e6, np.nan)
    new_pid = np.where(t >= 21, 150e6, np.nan)
    series = {(s.collector, s.id): s for s in (
        _series(1, "nv_inference_request_success", {"model": "probe"}, t, served),
        _series(2, "process_rss_bytes", {"role": "server", "pid": "10"}, t, old_pid),
        _series(3, "process_rss_bytes", {"role": "server", "pid": "11"}, t, new_pid))}
    restarts = restart_times(series)
    # between the old server's last sample (19.5 s) and the new one's first (21 s)
    assert len(restarts) == 1 and T0 + 19.5 * S < restarts[0] <= T0 + 21 * S
    # A host-wide series spanning the restart would read as a 50 MB drop (neither leak nor healthy): split instead.
    rising = MemorySeries("rss_bytes{role=server}", T0 / S + t, np.where(t < 20, t, t - 20) * 100,
                          np.where(t < 20, 200e6 + t * 1e6, 150e6))
    parts = per_lifetime([rising], restarts)
    assert [p.name for p in parts] == ["rss_bytes{role=server} lifetime 1", "rss_bytes{role=server} lifetime 2"]
    assert np.all(parts[0].values >= 200e6) and np.all(parts[1].values == 150e6)
    assert per_lifetime([rising], []) == [rising]
    # One process per lifetime (the PID is a label, not in the subject): two subjects, each named by its lifetime.
    stub = [MemorySeries("rss_bytes{model=m,role=stub}", T0 / S + t[sel], t[sel] * 100, np.full(sel.sum(), 9e7))
            for sel in (t < 20, t >= 21)]
    assert [p.name for p in per_lifetime(stub, restarts)] == ["rss_bytes{model=m,role=stub} lifetime 1",
                                                              "rss_bytes{model=m,role=stub} lifetime 2"]
    [loss] = restart_losses(restarts, T0)
    assert loss["kind"] == RESTART and "restarted 19.5 s" in loss["reason"] and "per server lifetime" in loss["reason"]


def test_a_reloaded_model_is_no_restart_every_models_counters_going_back_is() -> None:
    """Without the server's process sampled (a remote server) only counters tell: one model unloaded and loaded
    again resets its own counters while the others count on; a restart resets them all."""
    t = np.arange(0.0, 40.0, 0.5)
    steady = t * 50
    reloaded = np.where(t < 20, t * 100, np.where(t < 22, np.nan, (t - 22) * 100))  # gone 2 s, back from 0
    careless = {(s.collector, s.id): s for s in (
        _series(1, "nv_inference_request_success", {"model": "probe"}, t, reloaded),
        _series(2, "nv_inference_request_success", {"model": "rl_high"}, t, steady))}
    assert restart_times(careless) == []
    restarted = {(s.collector, s.id): s for s in (
        _series(1, "nv_inference_request_success", {"model": "probe"}, t, reloaded),
        _series(2, "nv_inference_request_success", {"model": "rl_high"}, t, np.where(t < 22, steady, t - 22)))}
    [at] = restart_times(restarted)
    assert T0 + 22 * S <= at <= T0 + 23 * S
    # the server's PID, where sampled, decides: one PID throughout is no restart whatever the counters did
    same_pid = {**restarted, ("local", 3): _series(3, "process_rss_bytes", {"role": "server", "pid": "10"}, t,
                                                    np.full(len(t), 200e6))}
    assert restart_times(same_pid) == []


def test_a_stretch_without_the_servers_rss_is_a_loss() -> None:
    t = np.arange(0.0, 30.0, 0.1)
    rss = np.where((t > 10) & (t < 18), np.nan, 100e6)
    [loss] = server_gaps({("local", 1): _series(1, "process_rss_bytes", {"role": "server", "pid": "7"}, t, rss)},
                         T0)
    assert loss["kind"] == SERVER_GAP and 7.5 < loss["gap_s"] < 8.5 and "pid 7" in loss["subject"]
    healthy = np.where((t > 10) & (t < 12), np.nan, 100e6)  # 2 s of gaps (an overloaded box): no loss
    assert not server_gaps({("local", 1): _series(1, "process_rss_bytes", {"role": "server"}, t, healthy)}, T0)
