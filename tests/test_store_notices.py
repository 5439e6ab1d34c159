"""Wake-ups across processes sharing a PostgreSQL store (LISTEN/NOTIFY), and none needed on SQLite."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from node.states import SeriesState
from node.store import open_store
from tests.postgres_server import postgres_server, postgres_url  # noqa: F401 - fixtures

HEAD = {"Modality": "CT", "BodyPartExamined": "HEAD"}


def _queue_job(store, series_uid: str) -> int:
    store.add_instance(series_uid + ".1", "1.2.840.10008.5.1.4.1.1.2", "/nowhere/1.dcm", "M")
    store.index_instance(series_uid + ".1", series_uid, "1.2.9", HEAD, 0.0)
    store.set_series_state(series_uid, SeriesState.COMPLETE)
    (job_id,) = store.route_series(series_uid, [("r", "head-ct-hematoma", ["pacs"])])
    return job_id


def test_a_process_is_woken_when_another_queues_jobs_or_results(postgres_url: str):  # noqa: F811
    ingest, worker = open_store(postgres_url, Path(".")), open_store(postgres_url, Path("."))
    jobs, results = threading.Event(), threading.Event()
    worker_watch = worker.watch({"jobs": jobs.set})
    ingest_watch = ingest.watch({"results": results.set})
    try:
        assert worker_watch.wait_listening(10) and ingest_watch.wait_listening(10)
        time.sleep(0.2)
        jobs.clear(), results.clear()  # each watch wakes once as it starts listening
        job_id = _queue_job(ingest, "1.2.9.7")
        assert jobs.wait(2), "the ingest node's routing woke the worker"
        assert not results.is_set()
        worker.claim_jobs("worker", 1, 60)
        worker.result_written(job_id, ("1.2.9.99.1", "1.2.840.10008.5.1.4.1.1.7", "/nowhere/r.dcm"), ["pacs"])
        assert results.wait(2), "the worker's result woke the ingest node's outbox"
    finally:
        worker_watch.stop(), ingest_watch.stop()
        ingest.close(), worker.close()


def test_the_embedded_store_has_nothing_to_watch(tmp_path: Path):
    store = open_store(None, tmp_path)
    woken = threading.Event()
    store.watch({"jobs": woken.set}).stop()
    _queue_job(store, "1.2.9.8")
    assert not woken.is_set(), "SQLite has one writer process, which wakes its own stages"
    store.close()
