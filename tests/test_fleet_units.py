"""rmt.fleet on synthetic Prometheus matrices: servers, origins, DCGM units, counter resets and gaps, CLI errors."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from rmt.check.spec import parse_spec
from rmt.cli import main
from rmt.fleet.adapter import epochs, group_servers, model_windows, reset_times
from rmt.fleet.judge import HEALTHY, LEAKING, NOT_JUDGED, judge_epochs
from rmt.fleet.prometheus import MAX_POINTS, PromSeries, plan_step

STEP = 1.0
SPEC = parse_spec("leak.max_growth = 64KiB/request")
T0 = 1_800_000_000.0


def _ps(metric: str, t: np.ndarray, v: np.ndarray, **labels: str) -> PromSeries:
    return PromSeries({"__name__": metric, "instance": "10.0.0.1:8002", "job": "triton", **labels}, t, v)


def _server(pod: str, done: np.ndarray, rss: np.ndarray, t: np.ndarray, model: str = "m") -> list[PromSeries]:
    """Triton's success counter and the collector's stub RSS of one model on one pod."""
    return [_ps("nv_inference_request_success", t, done, pod=pod, model=model, version="1"),
            _ps("nv_inference_request_failure", t, np.zeros(len(t)), pod=pod, model=model, version="1",
                reason="BACKEND"),
            _ps("nv_inference_pending_request_count", t, np.zeros(len(t)), pod=pod, model=model, version="1"),
            _ps("rmt_process_rss_bytes", t, rss, pod=pod, model=model, role="stub", name=f"{model}_0_0",
                exported_instance=f"{model}_0_0", pid="42")]


def test_a_leak_and_a_flat_twin_are_told_apart_per_pod() -> None:
    t = T0 + np.arange(60.0)
    done = np.arange(60.0) * 10
    matrix = _server("leaky", done, 1e8 + done * 2**20, t) + _server("fine", done, np.full(60, 1e8), t)
    servers = group_servers(matrix)
    assert sorted(servers) == ["fine", "leaky"]
    result = {name: judge_epochs(name, epochs(data, STEP), SPEC, STEP) for name, data in servers.items()}
    assert result["leaky"].state == LEAKING and result["fine"].state == HEALTHY
    leak = next(v for v in result["leaky"].verdicts if v.check == "leak")
    # the target's labels are gone, the collector's own `instance` (a model instance) is back under its name
    assert leak.subject == "process_rss_bytes{instance=m_0_0,model=m,name=m_0_0,role=stub}"
    assert leak.evidence["bytes_per_request"] == pytest.approx(2**20 / 10 * 10, rel=0.05)


def test_a_counter_reset_is_a_new_epoch_never_growth_or_a_negative_rate() -> None:
    t = T0 + np.arange(80.0)
    done = np.r_[np.arange(40.0) * 10, np.arange(40.0) * 10]  # the pod restarted at t0 + 40 s
    rss = np.r_[np.full(40, 3e8), np.full(40, 1e8)]  # a flat server, lower after its restart
    data = group_servers(_server("p", done, rss, t))["p"]
    assert reset_times(data.series) == [round((T0 + 40) * 1e9)]
    parts = epochs(data, STEP)
    assert [round(e.start_s - T0) for e in parts] == [0, 40]
    for part in parts:
        w = part.inputs.windows[0]
        assert (w.completed >= 0).all() and w.completed.sum() == 390
    verdicts = judge_epochs("p", parts, SPEC, STEP)
    assert verdicts.state == HEALTHY and verdicts.epochs == 2
    leaks = [v for v in verdicts.verdicts if v.check == "leak"]
    assert [v.subject.rsplit(" ", 1)[-1] for v in leaks] == ["0", "1"]
    assert all(v.status == "pass" for v in leaks)


def test_a_scrape_gap_is_a_hole_not_a_long_window() -> None:
    t = T0 + np.r_[np.arange(20.0), np.arange(30.0, 50.0)]  # 10 s without a scrape
    done = (t - T0) * 5
    data = group_servers(_server("p", done, np.full(len(t), 1e8), t))["p"]
    (w,) = model_windows(data.series, STEP)
    in_gap = (w.t_s > T0 + 18) & (w.t_s < T0 + 30)
    assert list(w.t_s) == list(T0 + np.arange(49.0))
    assert not w.completed[in_gap].any() and not w.pending[in_gap].any() and not w.sent[in_gap].any()
    assert set(w.completed[~in_gap].tolist()) == {5.0}
    verdicts = judge_epochs("p", epochs(data, STEP), SPEC, STEP)
    assert verdicts.epochs == 1 and verdicts.state == HEALTHY


def test_starvation_and_fairness_from_triton_counters_a_scrape_gap_is_no_starvation() -> None:
    t = T0 + np.r_[np.arange(20.0), np.arange(30.0, 40.0)]  # a 10 s scrape gap
    served = (t - T0) * 20
    starved = np.where(t < T0 + 5, (t - T0) * 4, 20.0)  # served 5 s, then nothing while 3 requests wait
    def model(name: str, done: np.ndarray) -> list[PromSeries]:
        return [_ps("nv_inference_request_success", t, done, pod="p", model=name, version="1"),
                _ps("nv_inference_pending_request_count", t, np.full(len(t), 3.0), pod="p", model=name, version="1")]
    data = group_servers(model("busy", served) + model("starved", starved))["p"]
    verdicts = judge_epochs("p", epochs(data, STEP), parse_spec("starvation.max_gap = 5s"), STEP).verdicts
    starvation = {v.subject: v for v in verdicts if v.check == "starvation"}
    assert starvation["starved"].status == "fail" and starvation["starved"].measured == 14  # 5 … 18 s: the gap ends it
    assert starvation["busy"].status == "pass" and starvation["busy"].measured == 0  # the gap is no stretch
    fair = next(v for v in verdicts if v.check == "fairness")
    assert fair.status == "fail" and fair.measured is not None and fair.measured < 0.9


def test_triton_page_wins_over_the_collector_copy_and_dcgm_is_mib() -> None:
    t = T0 + np.arange(30.0)
    done = np.arange(30.0) * 10
    matrix = [
        *_server("p", done, np.full(30, 1e8), t),
        _ps("rmt_nv_inference_request_success", t, done * 0, pod="p", model="m", version="1"),
        # DCGM exporter's pod mapping: the pod using the GPU, kept by Prometheus as exported_pod
        _ps("DCGM_FI_DEV_FB_USED", t, np.full(30, 1024.0), pod="dcgm-exporter-x", exported_pod="p", gpu="0",
            UUID="GPU-1", modelName="H200", Hostname="node1"),
        _ps("DCGM_FI_DEV_FB_FREE", t, np.full(30, 2048.0), pod="dcgm-exporter-x", exported_pod="p", gpu="0",
            UUID="GPU-1"),
    ]
    servers = group_servers(matrix)
    assert list(servers) == ["p"]
    data = servers["p"]
    success = [s for s in data.series if s.measure == "nv_inference_request_success"]
    assert len(success) == 1 and success[0].values[-1] == 290  # Triton's own page, not the zeroed copy
    used = next(s for s in data.series if s.measure == "gpu_memory_used_bytes")
    assert used.labels == {"gpu": "0", "uuid": "GPU-1"} and used.values[0] == 1024 * 2**20
    inputs = epochs(data, STEP)[0].inputs
    assert "gpu_memory_used_bytes{gpu=0,uuid=GPU-1}" in {m.name for m in inputs.memory}
    assert inputs.free_memory["gpu=0"][1][0] == 2048 * 2**20


def test_two_gpus_without_traces_make_cross_device_undecided_not_passed() -> None:
    t = T0 + np.arange(30.0)
    done = np.arange(30.0) * 10
    dcgm = [_ps("DCGM_FI_DEV_FB_USED", t, np.full(30, 1024.0), exported_pod="p", pod="dcgm", gpu=g, UUID=f"GPU-{g}")
            for g in ("0", "1")]
    data = group_servers(_server("p", done, np.full(30, 1e8), t) + dcgm)["p"]
    verdicts = judge_epochs("p", epochs(data, STEP), parse_spec("cross_device = on"), STEP)
    (xdev,) = [v for v in verdicts.verdicts if v.check == "cross_device"]
    assert xdev.undecided and xdev.subject == "gpu=0, gpu=1" and "per-execution traces" in xdev.explanation
    assert verdicts.state == HEALTHY  # required, but undecided: said, not failed


def test_a_server_without_completed_requests_is_not_judged() -> None:
    t = T0 + np.arange(30.0)
    data = group_servers([_ps("rmt_process_rss_bytes", t, np.full(30, 1e8), pod="p", role="server",
                              name="tritonserver")])["p"]
    verdicts = judge_epochs("p", epochs(data, STEP), SPEC, STEP)
    assert verdicts.state == NOT_JUDGED and "nv_inference_request_success" in verdicts.reason()


def test_long_ranges_widen_the_step() -> None:
    assert plan_step(0, 100, 1) == 1
    assert (86_400 / plan_step(0, 86_400, 1)) < MAX_POINTS


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("args, message", [
    (["--prometheus", "ftp://x"], "is not a URL"),
    (["--prometheus", "http://127.0.0.1:{port}", "--last", "1h"], "cannot reach Prometheus"),
    (["--prometheus", "http://127.0.0.1:1", "--start", "yesterday"], "is not a time"),
    (["--prometheus", "http://127.0.0.1:1", "--start", "2000", "--end", "1000"], "time range is empty"),
    (["--prometheus", "http://127.0.0.1:1", "--rate-limit-resource", "R1:2"], "needs --model-repository"),
])
def test_bad_input_is_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", *(a.replace("{port}", str(_closed_port())) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rmt: error: ") and message in err
