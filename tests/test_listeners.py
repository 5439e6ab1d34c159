"""Ingest across cores: ``[node] listeners = 2`` on one DICOM port, on SQLite and on PostgreSQL.

Real processes throughout: ``ainode serve`` (which starts its second listener process),
dcmtk's storescu as the modalities (one association per call), Orthanc as the PACS.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from models.phantoms.head_ct import generate_head_ct, write_phantom
from benchmarks.postgres import PostgresServer
from benchmarks.scale_out import audit_records
from benchmarks.services import (HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, node_pid,
                                 storescu, wait_for)
from node.config import ConfigError, parse_config
from node.states import JobState
from node.store import open_store
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture

pytestmark = pytest.mark.e2e


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[OrthancServer]:
    server = OrthancServer(tmp_path / "orthanc").start()
    yield server
    server.stop()


def _node_with_listeners(root: Path, orthanc: OrthancServer, listeners: int, store_toml: str = "") -> NodeProcess:
    http_port, dicom_port = free_port(), free_port()
    config = node_config(dicom_port, http_port, orthanc, HEAD_CT_ROUTE, quiet_seconds=3.0, extra=store_toml)
    config = config.replace('data_dir = "data"\n', f'data_dir = "data"\nlisteners = {listeners}\n', 1)
    node = NodeProcess(root / "node", config)
    node.dicom_port = dicom_port
    return node.start(http_port)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_series_over_many_associations_lands_in_both_listeners_and_is_processed_once(
        backend: str, tmp_path: Path, orthanc: OrthancServer, request: pytest.FixtureRequest):
    url = None
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
    node = _node_with_listeners(tmp_path, orthanc, 2, f'\n[store]\nurl = "{url}"\n' if url else "")
    try:
        phantom = generate_head_ct(seed=3, slices=16, hematoma=True)
        files = sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm")
        series_uid = str(phantom.datasets[0].SeriesInstanceUID)
        for path in files:  # one association per slice: the kernel spreads them over the listeners
            storescu([path], node.dicom_port, calling_ae="MODALITY")

        main = node_pid(node)
        records = wait_for(lambda: (lambda found: found if len(found) == len(files) else None)(
            [r for r in audit_records(node.log_text(), "association") if r["outcome"] == "accepted"]),
            10, what="an audit record per association")  # written as each connection closes
        pids = {r["pid"] for r in records}
        assert len(records) == len(files) and sum(r["instances"] for r in records) == len(files)
        assert main in pids and len(pids) == 2, f"associations by process: {pids} (node {main})"

        def delivered() -> list[dict]:
            jobs = [j for j in node.jobs() if j["series_uid"] == series_uid]
            return jobs if jobs and all(j["state"] == JobState.DELIVERED for j in jobs) else []

        (job,) = wait_for(delivered, 120, what="the series delivered")
        assert job["runs"] == 1
        store = open_store(url, node.workdir / "data")
        try:
            assert store.get_series(series_uid).instance_count == len(files)
            assert len(store.jobs_for_series(series_uid)) == 1, "one series, one job"
            completions = [e for e in store.series_events(series_uid) if e["state"] == "complete"]
            assert len(completions) == 1, completions
        finally:
            store.close()
        metrics = node.metrics()  # the second listener's counters are the node's too
        stored = re.search(r'^ainode_instances_received_total\{outcome="stored"\} (\S+)$', metrics, re.M)
        assert stored and float(stored.group(1)) == len(files), stored
        health = httpx.get(f"{node.http_url}/healthz", timeout=5).json()
        assert health["status"] == "ok", health
    finally:
        node.stop()
    assert "Traceback" not in node.log_text()


def test_listeners_are_configured_in_node(tmp_path: Path):
    assert parse_config({}, tmp_path).node.listeners == 1
    assert parse_config({"node": {"listeners": 4}}, tmp_path).node.listeners == 4
    with pytest.raises(ConfigError, match="node.listeners"):
        parse_config({"node": {"listeners": 0}}, tmp_path)
    assert parse_config({"runner": {"metrics_port": 9101}}, tmp_path).runner.metrics_port == 9101
    with pytest.raises(ConfigError, match="runner.metrics_port"):
        parse_config({"runner": {"metrics_port": 70000}}, tmp_path)
