"""On the real server (``rmt run reconfig``, explicit model control, real Locust): ``reload`` PASSES on Triton's
atomic reload with a config override (``rl_low``, priority 2 → 1, under load) and FAILS on the planted non-atomic
one (``probe`` unloaded, then loaded: every request in between fails)."""

from __future__ import annotations

from pathlib import Path

from tests.test_run import rmt, verdicts


def test_reload_passes_the_atomic_reload_and_fails_unload_then_load(tmp_path: Path) -> None:
    out = tmp_path / "reconfig"
    done = rmt("run", "reconfig", "--duration", "10", "--out", str(out), "--expected")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]  # every verdict as expected
    reloads = {v["subject"].split(" @ ")[0]: v for v in verdicts(out) if v["check"] == "reload"}
    atomic, careless = reloads["rl_low"], reloads["probe"]
    print(f"reload: rl_low {atomic['measured']:.0f} failed requests, probe (unload first) "
          f"{careless['measured']:.0f}")
    assert atomic["status"] == "pass" and atomic["measured"] == 0, atomic["explanation"]
    assert careless["status"] == "fail" and careless["measured"] >= 1, careless["explanation"]
