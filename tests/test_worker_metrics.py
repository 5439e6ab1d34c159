"""``ainode worker`` has no HTTP API: ``[runner] metrics_port`` serves its runner and outbox metrics."""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from models.phantoms.head_ct import generate_head_ct, write_phantom
from benchmarks.postgres import PostgresServer
from benchmarks.scale_out import WorkerProcess, shared_store_toml
from benchmarks.services import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, storescu, wait_for
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture

pytestmark = pytest.mark.e2e


def test_a_worker_serves_its_metrics(tmp_path: Path, postgres_server: PostgresServer):  # noqa: F811
    url = postgres_server.create_database()
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    http_port, dicom_port, metrics_port = free_port(), free_port(), free_port()
    ingest = NodeProcess(tmp_path / "ingest", node_config(
        dicom_port, http_port, orthanc, HEAD_CT_ROUTE, quiet_seconds=1.0,
        extra=shared_store_toml(url, runner_enabled=False)))
    worker_toml = shared_store_toml(url, runner_enabled=True).replace("[runner]\n", f"[runner]\nmetrics_port = {metrics_port}\n")
    worker = WorkerProcess(tmp_path / "worker", node_config(0, 0, orthanc, HEAD_CT_ROUTE, extra=worker_toml))
    try:
        ingest.start(http_port)
        worker.start()
        phantom = generate_head_ct(seed=5, slices=4, hematoma=True)
        storescu(sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm"), dicom_port)

        def scraped() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            done = re.search(r'^ainode_inference_seconds_count\{[^}]*model="head-ct-hematoma"[^}]*\} (\S+)$', text, re.M)
            delivered = re.search(r'^ainode_egress_results_total\{destination="pacs",outcome="delivered"\} (\S+)$',
                                  text, re.M)
            return text if done and float(done.group(1)) == 1 and delivered and float(delivered.group(1)) > 0 else None

        # A bound on waiting, not a speed check: the worker process starts, loads its packs and
        # runs its first job; in one full-suite run on the 2-core machine that took over 90 s.
        text = wait_for(scraped, 240, what="the worker's metrics to count its job and deliveries")
        assert "ainode_build_info" in text or "ainode_engine_info" in text
        with pytest.raises(httpx.HTTPError):  # loopback only ([node] http_host)
            httpx.get(f"http://{_outside_address()}:{metrics_port}/metrics", timeout=2)
    finally:
        worker.stop()
        ingest.stop()
        orthanc.stop()


def _outside_address() -> str:
    """This machine's address on its default route (not loopback)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent
        return s.getsockname()[0]
