"""Priority where people look (issue 32): the jobs API, the status page, and the ``queue`` stage's
``priority`` label (bounded; the other stages keep their label sets)."""
from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from node.config import Priority
from node.http.web import create_app
from node.metrics import Metrics
from node.states import SeriesState
from node.store import JobStore

CT = "1.2.840.10008.5.1.4.1.1.2"


def _job(store: JobStore, series_uid: str, priority: Priority) -> int:
    store.add_instance(f"{series_uid}.1", CT, f"/spool/{series_uid}.dcm", "ER_CT")
    store.index_instance(f"{series_uid}.1", series_uid, "1.2.3", {"Modality": "CT"}, 0.0)
    store.set_series_state(series_uid, SeriesState.COMPLETE)
    (job_id,) = store.route_series(series_uid, [("head", "head-ct-hematoma", ["pacs"], priority)])
    return job_id


def test_the_api_and_the_status_page_show_the_priority(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    try:
        stat = _job(store, "1.2.40.1", Priority.STAT)
        routine = _job(store, "1.2.40.2", Priority.ROUTINE)
        with TestClient(create_app(store, Metrics(), lambda: {"status": "ok"})) as client:
            jobs = {j["id"]: j for j in client.get("/api/jobs").json()["jobs"]}
            assert jobs[stat]["priority"] == "stat" and jobs[routine]["priority"] == "routine"
            assert client.get(f"/api/jobs/{stat}").json()["priority"] == "stat"
            page = client.get("/").text
        assert 'data-priority="stat"' in page
        assert page.count('data-priority="') == 1, "routine, the default, is not marked"
    finally:
        store.close()


def test_queue_time_is_labelled_by_priority_and_the_other_stages_are_not():
    metrics = Metrics()
    metrics.declare(["head-ct-hematoma"], ["pacs"])
    metrics.observe_stage("queue", "head-ct-hematoma", 0.5, Priority.STAT)
    metrics.observe_stage("inference", "head-ct-hematoma", 0.2, Priority.STAT)
    text = metrics.render().decode()
    assert 'ainode_stage_duration_seconds_count{model="head-ct-hematoma",priority="stat",stage="queue"} 1.0' in text
    queue_series = set(re.findall(r'ainode_stage_duration_seconds_count\{([^}]*stage="queue"[^}]*)\}', text))
    assert {re.search(r'priority="(\w*)"', s).group(1) for s in queue_series} == {"routine", "stat"}
    inference = re.findall(r'ainode_stage_duration_seconds_count\{([^}]*stage="inference"[^}]*)\} (\S+)', text)
    assert inference == [('model="head-ct-hematoma",priority="",stage="inference"', "1.0")], inference
