"""A real Prometheus scrapes a real node while a head-CT series goes through it.

Debian's ``prometheus`` runs on a free loopback port with a generated configuration
(scrape every second, storage in the test's temp dir) and scrapes ``ainode serve``,
which sends its results to a real Orthanc. The test then asks Prometheus' HTTP API what
it saw: the instances received, the job delivered, one observation per pipeline stage;
and it runs every query of the Grafana dashboard in ``docker/grafana`` against it.

The compose stack in ``docker/`` cannot be started here (no image can be pulled):
``test_compose_stack_is_consistent`` checks its structure, ``promtool`` checks its
Prometheus configuration, and ``docker compose config`` runs when the tool is present.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import yaml

from models.phantoms.head_ct import generate_head_ct, write_phantom
from node.metrics import STAGES, build_version
from node.states import JobState
from benchmarks.services import stop_process
from tests.support import HEAD_CT_ROUTE, OrthancServer, free_port, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "ainode.json"
MODEL = "head-ct-hematoma"
RATE_WINDOW = "2m"
"""What the dashboard's ``$__rate_interval`` stands for here (Grafana fills it in)."""


class PrometheusServer:
    """Debian's ``prometheus`` on a loopback port, scraping ``targets`` every second."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "ainode", "static_configs": [{"targets": targets}]}],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "PrometheusServer":
        binary = shutil.which("prometheus")
        assert binary, "Debian's prometheus is not installed (apt-get install prometheus; .ci/run does)"
        log = open(self.workdir / "prometheus.log", "ab")
        self._proc = subprocess.Popen(
            [binary, f"--config.file={self.config_path}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=log, start_new_session=True,
        )
        wait_for(lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200, 30, what="prometheus")
        return self

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (now, or at ``at``); fails on a query error."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        answer = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()
        assert answer["status"] == "success", (expr, answer)
        assert answer["data"]["resultType"] == "vector", (expr, answer["data"]["resultType"])
        return answer["data"]["result"]

    def value(self, expr: str, at: float | None = None) -> float:
        """The single value of ``expr`` (an aggregation); NaN when it has no sample."""
        result = self.query(expr, at)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else math.nan


def _finite(result: list[dict[str, Any]]) -> list[float]:
    return [v for v in (float(r["value"][1]) for r in result) if math.isfinite(v)]


def dashboard_queries() -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every target of every panel of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries.append((panel["title"], target["expr"]))
    return queries


def test_prometheus_scrapes_a_series_through_the_node(tmp_path: Path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    node = start_node(tmp_path / "node", orthanc, HEAD_CT_ROUTE, quiet_seconds=1.0)
    prometheus = PrometheusServer(tmp_path / "prometheus", [node.http_url.removeprefix("http://")])
    try:
        prometheus.start()
        # two scrapes before the series: every declared series starts at 0, so rate() sees the first one
        wait_for(lambda: prometheus.value('count_over_time(up{job="ainode"}[1m])') >= 2
                 and prometheus.value('up{job="ainode"}') == 1, 60, what="two scrapes of the node")
        wait_for(lambda: prometheus.value(f'ainode_engine_info{{model="{MODEL}"}}') == 1, 60, what="the model loaded")
        before = time.time()
        assert prometheus.value('ainode_instances_received_total{outcome="stored"}', before) == 0

        phantom = generate_head_ct(seed=5, slices=8, hematoma=True)
        files = sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm")
        series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
        storescu(files, node.dicom_port)
        (job,) = wait_for(lambda: [j for j in node.jobs() if j["series_uid"] == series_uid
                                   and j["state"] in (JobState.DELIVERED, JobState.FAILED)], 120, what="the job")
        assert job["state"] == JobState.DELIVERED, job
        objects = len(httpx.get(f"{node.http_url}/api/jobs/{job['id']}", timeout=10).json()["results"])
        assert objects > 0
        wait_for(lambda: prometheus.value(f'ainode_series_latency_seconds_count{{model="{MODEL}"}}') == 1, 30,
                 what="the delivery scraped")
        wait_for(lambda: prometheus.value('ainode_jobs{state="delivered"}') == 1, 30, what="the job store scraped")

        # ingest: exactly the slices sent, their bytes, no association left open
        stored = 'ainode_instances_received_total{outcome="stored"}'
        assert prometheus.value(stored) - prometheus.value(stored, before) == len(files)
        assert prometheus.value(f"increase({stored}[5m])") >= len(files) - 1e-9
        received = prometheus.value("ainode_received_bytes_total")
        sizes = sum(p.stat().st_size for p in files)
        assert 0.9 * sizes < received <= sizes, (received, sizes)  # the datasets, without preamble and meta
        assert prometheus.value('ainode_instances_received_total{outcome="error"}') == 0
        assert prometheus.value("ainode_associations_open") == 0

        # the pipeline: one series, one job delivered with all its objects, nothing dead
        assert prometheus.value('ainode_series_routed_total{outcome="routed"}') == 1
        assert prometheus.value('ainode_series{state="routed"}') == 1
        assert prometheus.value('ainode_jobs{state="queued"}') == 0
        assert prometheus.value('ainode_egress_results_total{destination="pacs",outcome="delivered"}') == objects
        assert prometheus.value('ainode_results{state="delivered"}') == objects
        assert prometheus.value("ainode_dead_letters") == 0
        assert prometheus.value("sum(ainode_job_failures_total)") == 0

        # one observation per stage of the job, and latencies that add up
        for stage in STAGES:
            count = f'ainode_stage_duration_seconds_count{{stage="{stage}",model="{MODEL}"}}'
            assert prometheus.value(count) == 1, stage
            assert prometheus.value(f"increase({count}[5m])") > 0, stage
        receive = prometheus.value(f'ainode_stage_duration_seconds_sum{{stage="receive",model="{MODEL}"}}')
        assert receive >= 1.0, "the quiet period is part of receive"
        total = prometheus.value(f'ainode_series_latency_seconds_sum{{model="{MODEL}"}}')
        parts = prometheus.value(f'sum(ainode_stage_duration_seconds_sum{{model="{MODEL}"}})')
        assert receive < total and parts <= total + 0.5, (receive, parts, total)
        assert prometheus.value(f'ainode_inference_seconds_count{{model="{MODEL}"}}') == 1
        p95 = prometheus.value(f'histogram_quantile(0.95, sum by (le) (rate(ainode_stage_duration_seconds_bucket'
                               f'{{stage="inference",model="{MODEL}"}}[{RATE_WINDOW}])))')
        assert math.isfinite(p95) and p95 > 0

        # the node itself
        assert prometheus.value(f'ainode_build_info{{version="{build_version()}"}}') == 1
        assert prometheus.value("ainode_disk_free_bytes") > 0
        assert prometheus.value("ainode_disk_below_watermark") == 0

        # every query of the Grafana dashboard returns data
        empty = []
        for title, expr in dashboard_queries():
            result = prometheus.query(expr.replace("$__rate_interval", RATE_WINDOW))
            if not _finite(result):
                empty.append(f"{title}: {expr} -> {result}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    finally:
        prometheus.stop()
        node.stop()
        orthanc.stop()


def test_compose_stack_is_consistent():
    """docker/compose.yaml: the four services, every mounted file present, dashboards provisioned."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) >= {"orthanc", "ainode", "prometheus", "grafana"}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name}: {source} is mounted but missing"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], f"{name}: undeclared secret {secret}"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    for name in ("ainode", "prometheus", "grafana"):  # the node's API and the monitoring on loopback only
        published = [p for p in services[name]["ports"] if p.endswith(":8080") or name != "ainode"]
        assert published and all(p.startswith("127.0.0.1:") for p in published), (name, published)
    assert "ainode-api-token" in services["ainode"]["secrets"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")

    # Prometheus scrapes the node's service on the port its config listens on
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["ainode:8080"]
    assert "http_port = 8080" in (DOCKER / "config.docker.toml").read_text()
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus"
    subprocess.run([promtool, "check", "config", str(DOCKER / "prometheus.yml")], check=True, capture_output=True)

    # Grafana: the datasource the panels name, the folder the dashboard is mounted in
    datasources = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {source["uid"]}
    providers = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/ainode.yaml").read_text())
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
    path = providers["providers"][0]["options"]["path"]
    assert mounts.get(path) == "./grafana/dashboards"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "ainode"


def _compose_command() -> list[str] | None:
    """``docker compose`` (the plugin) or Debian's ``docker-compose``; None when neither is here."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return [shutil.which("docker-compose")] if shutil.which("docker-compose") else None  # type: ignore[list-item]


@pytest.mark.skipif(_compose_command() is None, reason="neither docker compose nor docker-compose is installed")
def test_compose_config_accepts_the_stack(tmp_path: Path):
    """``docker compose config`` (offline: it reads and checks, pulls nothing) on a copy with its secret files."""
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy)
    for secret in ("ainode-api-token", "grafana-admin-password"):
        (copy / secret).write_text("test\n")
    env = dict(os.environ, DOCKER_CONFIG=str(tmp_path / "docker-config"))
    done = subprocess.run([*_compose_command(), "-f", str(copy / "compose.yaml"), "config", "--quiet"],  # type: ignore[misc]
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
