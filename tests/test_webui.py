"""The RMT tab in a real Locust web UI, driven by a real headless Chromium (Debian ``chromium`` + ``chromedriver``).

A real ``locust`` process (tests/locustfile_webui.py: rmt.load + collector plugin + RMT web-UI plugin) serves its
web UI on loopback against the session's real tritonserver; Chromium fills the start form, starts the run, opens the
RMT tab and waits (deadline, polling) until it shows live memory and stream rows. Then the run's report is rendered
in the same browser. Screenshots go to ``$RMT_SCREENSHOTS`` (the README's come from ``RMT_SCREENSHOTS=docs``), else
to the test's temporary folder.

Without Chromium the test is skipped with the install line — except on CI (``CI`` set), where it must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rmt.report import write_report
from rmt.server import EmbeddedServer, free_port
from tests.zoo_client import wait_for

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "tests" / "locustfile_webui.py"
LOCUST = str(Path(sys.executable).parent / "locust")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1500,1300")
SCENARIO = {"traffic": {
    "mode": "open", "arrival": "poisson", "rate_per_s": 120,
    "patterns": {"small": {"shape": [16], "data": "zeros"}},
    "streams": [{"model": "leak_host", "pattern": "small"}, {"model": "leak_host_healthy", "pattern": "small"},
                {"model": "probe", "pattern": "small", "weight": 2},
                {"model": "queue_priority", "priority": 1, "pattern": "small"},
                {"model": "queue_priority", "priority": 2, "pattern": "small"}]}}


def chromium_paths() -> tuple[str, str]:
    """``(chromium, chromedriver)`` from PATH; skip (off CI) or fail (on CI) when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = "chromium" if browser is None else "chromedriver"
        reason = f"{missing} not found: apt-get install -y chromium chromium-driver (.ci/run does it on CI)"
        if os.environ.get("CI"):
            pytest.fail(f"on CI the web-UI test must run: {reason}")
        pytest.skip(reason)
    return browser, driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium session (Selenium with the Debian chromedriver; nothing is downloaded)."""
    chrome, driver_path = chromium_paths()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chrome
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def shots_dir(tmp_path: Path) -> Path:
    """Where screenshots go: ``$RMT_SCREENSHOTS`` (relative to the repository) or the test's folder."""
    where = os.environ.get("RMT_SCREENSHOTS")
    path = (ROOT / where) if where else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def _get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.load(resp)
    except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
        return None


@pytest.mark.parametrize("workers", [0, 2], ids=["local", "master+2workers"])
def test_rmt_tab_shows_live_rows_in_chromium(triton_server: EmbeddedServer, browser: Any, tmp_path: Path,
                                             workers: int) -> None:
    """The tab in a local run, and on a master whose traffic runs in two worker processes (streams from the workers'
    window reports, memory from the master's collector)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    run_dir = tmp_path / "run"
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps(SCENARIO))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    traffic = [LOCUST, "-f", str(LOCUSTFILE), "--host", triton_server.http_url, "--rmt-scenario", str(scenario)]
    role: list[str] = []
    bus = free_port()
    if workers:
        role = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(bus),
                "--expect-workers", str(workers)]
    proc = subprocess.Popen(
        [*traffic, *role, "--web-host", "127.0.0.1", "--web-port", str(port), "--rmt-run-dir", str(run_dir),
         "--rmt-collect-dir", str(run_dir), "--rmt-collect-server-url", triton_server.http_url,
         "--rmt-collect-interval", "0.2", "--rmt-ui-interval", "0.5", "--stop-timeout", "5", "HttpTraffic"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    helpers = [subprocess.Popen([*traffic, "--worker", "--master-host", "127.0.0.1", "--master-port", str(bus),
                                 "HttpTraffic"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True) for _ in range(workers)]
    shots = shots_dir(tmp_path)
    try:
        wait_for(lambda: _get_json(f"{base}/stats/requests") is not None, 60, "the Locust web UI")
        if workers:
            wait_for(lambda: len((_get_json(f"{base}/stats/requests") or {}).get("workers", [])) == workers, 60,
                     f"{workers} workers connected to the master")
        browser.get(base + "/")
        users = wait_for(lambda: browser.find_elements(By.NAME, "userCount"), 30, "the start form")[0]
        users.send_keys(Keys.CONTROL, "a")
        users.send_keys("8")
        rate = browser.find_element(By.NAME, "spawnRate")
        rate.send_keys(Keys.CONTROL, "a")
        rate.send_keys("100")
        browser.find_element(By.XPATH, "//button[@type='submit' and normalize-space()='Start']").click()
        tab = wait_for(lambda: browser.find_elements(By.XPATH, "//button[@role='tab' and normalize-space()='RMT']"),
                       30, "the RMT tab after the start")[0]
        tab.click()

        def live_rows() -> list[list[str]] | None:
            rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                    for tr in browser.find_elements(By.CSS_SELECTOR, "table tbody tr")]
            streams = [r for r in rows if r and r[0] == "stream" and r[2] not in ("", "0.0 req/s")]
            memory = [r for r in rows if r and r[0] == "process" and r[2] not in ("", "-")]
            rss = {r[1].split("name=")[-1].split(",")[0]: r[6] for r in memory if r[1].startswith("process_rss")}
            previews = rss.get("leak_host_0_0", ""), rss.get("leak_host_healthy_0_0", "")
            return rows if streams and "LEAK?" in previews[0] and "leak: ok" in previews[1] else None

        rows = wait_for(live_rows, 120, "live stream rows, and leak previews LEAK? for leak_host, ok for its twin")
        wait_for(lambda: (_get_json(f"{base}/stats/requests") or {}).get("user_count") == 8, 30,
                 "the 8 users typed into the form")
        if workers:  # the traffic ran in the workers: both sent requests, the master none
            stats = _get_json(f"{base}/stats/requests") or {}
            assert sorted(w["user_count"] > 0 for w in stats["workers"]) == [True] * workers, stats["workers"]
        browser.save_screenshot(str(shots / ("webui-rmt-tab.png" if not workers else "webui-rmt-tab-workers.png")))
        streams = {r[1]: r for r in rows if r[0] == "stream"}
        assert {"probe/p0/small", "queue_priority/p1/small", "queue_priority/p2/small"} <= set(streams)
        assert all("µs" in r[5] or "ms" in r[5] for r in streams.values()), streams

        browser.get(base + "/rmt/charts")
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "svg.chart path.series")) >= 3, 30,
                 "lines on the chart page")
        browser.save_screenshot(str(shots / "webui-rmt-charts.png"))
        with urllib.request.urlopen(urllib.request.Request(f"{base}/stop", data=b"", method="POST"), timeout=10):
            pass
        wait_for(lambda: (_get_json(f"{base}/stats/requests") or {}).get("state") == "stopped", 60, "the stop")
    finally:
        for p in (*helpers, proc):
            if p.poll() is None:
                p.terminate()
        outputs = [p.communicate(timeout=60)[0] for p in (*helpers, proc)]
    for output in outputs:
        assert "Traceback" not in output, output[-3000:]

    check = subprocess.run([sys.executable, "-m", "rmt", "check", str(run_dir)], capture_output=True, text=True,
                           timeout=120)
    assert check.returncode in (0, 3), check.stderr[-2000:]
    report = write_report(run_dir)
    browser.set_window_size(1500, 2600)
    browser.get(report.as_uri())
    charts = browser.execute_script("return document.querySelectorAll('svg.chart path.series').length")
    assert charts >= 5
    browser.save_screenshot(str(shots / "report.png"))
