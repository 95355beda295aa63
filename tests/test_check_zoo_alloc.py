"""On the real server with real Locust: ``fragmentation`` FAILS on ``fragmenting_pool`` (a first-fit arena never
compacted) and PASSES on its compacting twin, from the failure messages the users keep in ``failures.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

from rmt.check.api import evaluate
from rmt.server import EmbeddedServer
from tests.test_check_zoo import by_subject, load_run

FRAG_SCENARIO = {"traffic": {"mode": "open", "arrival": "poisson", "rate_per_s": 60,
                             "patterns": {"diverse": {"shape": {"loguniform": [1, 65536]}}},
                             "streams": [{"model": "fragmenting_pool", "pattern": "diverse"},
                                         {"model": "fragmenting_pool_healthy", "pattern": "diverse"}]}}


def test_fragmentation_fails_on_the_first_fit_arena_and_passes_on_the_compacting_twin(
        triton_server: EmbeddedServer, tmp_path: Path) -> None:
    run_dir = load_run(triton_server, tmp_path, FRAG_SCENARIO, users=6, run_time_s=10, collect=False)
    rows = [json.loads(line) for line in (run_dir / "failures.jsonl").read_text().splitlines()]
    assert rows and {r["model"] for r in rows} == {"fragmenting_pool"}
    assert all(r["free_bytes"] >= r["need_bytes"] > 0 for r in rows)  # enough free, yet no hole fits
    verdicts = by_subject(evaluate(run_dir, "only = fragmentation"), "fragmentation")
    defect, twin = verdicts["fragmenting_pool (host)"], verdicts["fragmenting_pool_healthy"]
    print(f"fragmentation: {defect.measured:.0f} allocation failures with enough free memory; twin "
          f"{twin.evidence['answered']:.0f} requests, none failed")
    assert defect.status == "fail" and defect.measured >= 1, defect.explanation
    assert "failed to allocate" in defect.evidence["fragmentation_examples"][0]["message"]
    assert twin.status == "pass" and twin.evidence["answered"] > 200, twin.explanation
