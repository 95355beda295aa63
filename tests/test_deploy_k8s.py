"""deploy/k8s: every manifest validates against Kubernetes' schemas (kubernetes-validate), and the pieces fit together:
the collector sidecar shares the Triton pod's PID namespace with flags ``rmt collect`` accepts, Prometheus' scrape
job keeps exactly the metrics ports, the locustfiles and the zoo the commands name exist (Debian's promtool is
built without Kubernetes discovery, so it cannot check the scrape job)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from rmt.cli import build_parser
from rmt.commands.collect import options_from_args
from rmt.core.resources import ZOO_REPOSITORY

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"


def _docs() -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def _pod(docs: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    return docs[("Deployment", name)]["spec"]["template"]


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


@pytest.mark.parametrize("kind, name", sorted(_docs()))
def test_each_manifest_validates(kind: str, name: str) -> None:
    kubernetes_validate.validate(_docs()[(kind, name)], kubernetes_validate.latest_version(), strict=True)


def test_kustomization_lists_every_manifest_and_sets_the_image() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    images = {i["name"] for i in kust["images"]}
    used = {c["image"] for d in _docs().values() if d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"].get("initContainers", []) + d["spec"]["template"]["spec"][
                "containers"] if not c["image"].startswith("nvcr.io/")}
    assert used == images == {"rmt"}


def test_the_collector_is_a_sidecar_rmt_collect_accepts() -> None:
    docs = _docs()
    pod = _pod(docs, "triton")
    assert pod["spec"]["shareProcessNamespace"] is True
    collector = _container(pod, "rmt-collector")
    assert collector["command"][:2] == ["rmt", "collect"]
    args = build_parser().parse_args(collector["command"][1:])
    options = options_from_args(args)
    assert args.server_url == "127.0.0.1:8000" and args.metrics_url == "http://127.0.0.1:8002/metrics"
    port = next(p for p in collector["ports"] if p["name"] == "rmt-metrics")["containerPort"]
    assert options.port == port and options.host == "0.0.0.0"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(port)
    triton = _container(pod, "triton")
    assert "--metrics-port=8002" in triton["command"]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    copy = pod["spec"]["initContainers"][0]["command"][-1]
    assert "/rmt-data/zoo/models/" in copy and ZOO_REPOSITORY.name == "models" and ZOO_REPOSITORY.parent.name == "zoo"
    service = docs[("Service", "triton")]
    names = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == names


def test_locust_master_and_scalable_workers_run_a_scenario_that_exists() -> None:
    docs = _docs()
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    scenario = dict(x.split("=", 1) for x in kust["configMapGenerator"][0]["literals"])["RMT_SCENARIO"]
    scenarios = ZOO_REPOSITORY.parent.parent / "scenarios"
    assert (scenarios / f"{scenario}.py").is_file() and (scenarios / f"{scenario}.json").is_file()
    master = " ".join(_container(_pod(docs, "locust-master"), "locust")["command"])
    worker = " ".join(_container(_pod(docs, "locust-worker"), "locust")["command"])
    assert "--master " in master and "--rmt-collector http://triton:9400" in master
    locustfile = "-f /rmt-data/scenarios/${RMT_SCENARIO}.py"
    assert locustfile in master and locustfile in worker
    assert "--worker --master-host locust-master" in worker
    assert docs[("Deployment", "locust-worker")]["spec"]["replicas"] >= 2
    assert {p["port"] for p in docs[("Service", "locust-master")]["spec"]["ports"]} == {8089, 5557}


def _scrape_config() -> dict[str, Any]:
    text = _docs()[("ConfigMap", "rmt-prometheus-scrape")]["data"]["rmt-scrape.yml"]
    parsed: dict[str, Any] = yaml.safe_load(text)
    return parsed


def test_the_scrape_job_keeps_the_metrics_ports_and_names_the_pod() -> None:
    job = _scrape_config()["scrape_configs"][0]
    keep = next(r for r in job["relabel_configs"]
                if r["source_labels"] == ["__meta_kubernetes_pod_container_port_name"])
    ports = {p["name"] for c in _pod(_docs(), "triton")["spec"]["containers"] for p in c.get("ports", [])}
    kept = {p for p in ports if re.fullmatch(keep["regex"], p)}
    assert kept == {"triton-metrics", "rmt-metrics"}
    assert any(r.get("target_label") == "pod" and r["source_labels"] == ["__meta_kubernetes_pod_name"]
               for r in job["relabel_configs"])

