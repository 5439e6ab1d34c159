"""Retention on a shared store: result files a worker wrote under its own data_dir are swept too."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from node.config import SpoolConfig
from node.pipeline.retain import Janitor
from node.store.spool import Spool
from node.states import SeriesState
from node.store import open_store
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture

HEAD = {"Modality": "CT", "BodyPartExamined": "HEAD"}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_janitor_removes_results_written_under_another_data_dir(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    url = request.getfixturevalue("postgres_server").create_database() if backend == "postgresql" else None
    store = open_store(url, tmp_path / "ingest")
    try:
        spool = Spool(tmp_path / "ingest" / "spool")  # the ingest node's
        worker_spool = Spool(tmp_path / "worker" / "spool")  # a worker's, on the shared mount
        path = spool.instance_path("1.2.9.1.1")
        path.write_bytes(b"x")
        store.add_instance("1.2.9.1.1", "1.2.840.10008.5.1.4.1.1.2", str(path), "M")
        store.index_instance("1.2.9.1.1", "1.2.9.1", "1.2.9", HEAD, 0.0)
        store.set_series_state("1.2.9.1", SeriesState.COMPLETE)
        (job_id,) = store.route_series("1.2.9.1", [("r", "head-ct-hematoma", ["pacs"])])
        store.claim_jobs("worker", 1, 60)
        results = []
        for n in (1, 2):
            written = worker_spool.result_dir(job_id) / f"1.2.9.99.{n}.dcm"
            written.write_bytes(b"r")
            results.append((f"1.2.9.99.{n}", "1.2.840.10008.5.1.4.1.1.7", str(written)))
        store.job_written(job_id, results, ["pacs"])
        for row in store.claim_due_results("pacs", "deliverer", time.time(), 60):
            store.result_delivered(row.id)
        assert store.get_job(job_id).state == "delivered"
        kept = worker_spool.result_dir(job_id + 1000) / "other.dcm"  # another job's result: not this series'
        kept.write_bytes(b"k")

        janitor = Janitor(SpoolConfig(retention_hours=1), store, spool, clock=lambda: time.time() + 7200)
        assert janitor.sweep() == 1
        assert not path.exists()
        assert not any(Path(r[2]).exists() for r in results), "the worker's result files are removed"
        assert not (worker_spool.results / str(job_id)).exists(), "and their emptied folder"
        assert kept.exists()
    finally:
        store.close()
