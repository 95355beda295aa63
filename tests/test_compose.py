"""``docker-compose.yml`` and the ``Dockerfile``: the compose file validates with ``docker-compose config`` (Debian's
``docker-compose``, installed by ``.ci/run``; or the ``docker compose`` plugin), the collector and Locust services run
the image built from the Dockerfile (rmt installed from its wheel, no ``pip install`` at container start) and find
the ready scenarios where the wheel installed them. No Docker engine is needed (nor present on CI)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_wheel import CHECKOUT, SOURCES

COMPOSE_FILE = CHECKOUT / "docker-compose.yml"


def compose_command() -> list[str]:
    """``docker-compose``, else the ``docker compose`` plugin; the test skips where neither is installed."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    pytest.skip("neither docker-compose nor the docker compose plugin is installed (apt-get install docker-compose)")


def _config(tmp_path: Path, **env: str) -> str:
    done = subprocess.run([*compose_command(), "-f", str(COMPOSE_FILE), "config"], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _service(config: str, name: str) -> str:
    """One service's block of the resolved configuration (services are indented two spaces, sorted)."""
    match = re.search(rf"^  {re.escape(name)}:\n((?:    .*\n|\n)*)", config, re.M)
    assert match, f"no service {name}"
    return match.group(1)


def test_compose_file_is_valid_and_runs_the_image_of_the_dockerfile(tmp_path: Path) -> None:
    config = _config(tmp_path, RMT_SCENARIO="priority")
    assert "pip install" not in config
    for name in ("collector", "locust-master", "locust-worker"):
        service = _service(config, name)
        assert f"context: {CHECKOUT}" in service and "image: rmt:local" in service, service
    for name in ("locust-master", "locust-worker"):
        assert "locust -f $$(rmt scenarios --path priority)" in _service(config, name)
    assert "--rmt-run-dir /runs/priority" in _service(config, "locust-master")
    assert "--model-repository=/rmt/rmt/zoo/models" in _service(config, "triton")
    assert (CHECKOUT / "rmt/zoo/models").is_dir()
    assert "--model-repository=/rmt/elsewhere" in _config(tmp_path, MODEL_REPOSITORY="/rmt/elsewhere")


def test_dockerfile_builds_the_wheel_from_what_the_wheel_test_builds() -> None:
    dockerfile = (CHECKOUT / "Dockerfile").read_text()
    copied = [src for line in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M) for src in line.split()]
    assert tuple(copied) == SOURCES
    assert "RUN pip wheel --no-cache-dir --no-deps -w /dist ." in dockerfile
    assert "RUN pip install --no-cache-dir /dist/*.whl" in dockerfile
    ignore = [ln.strip() for ln in (CHECKOUT / ".dockerignore").read_text().splitlines() if ln.strip()[:1] not in "#"]
    assert ignore[0] == "*" and {f"!{s}" for s in SOURCES} <= set(ignore)  # the build context holds only those
