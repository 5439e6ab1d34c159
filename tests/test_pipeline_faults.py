"""Faults inside the pipeline: poison pills, jobs that cannot start, operators' re-runs, orphans."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pydicom
import pytest

from node.config import RouteConfig, load_config
from node.pipeline.index import Indexer
from node.metrics import Metrics
from node.pipeline.run import Runner
from node.store.spool import Spool
from node.states import FailureStage, InstanceState, JobState, SeriesState
from node.store import JobStore
from node.http.web import WebServer
from tests.support import NodeProcess, free_port, node_config, wait_for

CT = "1.2.840.10008.5.1.4.1.1.2"


def _mutations(raw: bytes) -> dict[str, bytes]:
    """Broken copies of one good file, the kinds a fuzzer found stalling the indexer."""
    modality = raw.find(b"\x08\x00\x60\x00")
    thickness = raw.find(b"\x18\x00\x50\x00")
    series = raw.find(b"\x20\x00\x0e\x00")
    return {
        "unknown-vr": raw[:modality + 4] + b"ZZ" + raw[modality + 6:],  # NotImplementedError, on access
        "swapped-vr": raw[:thickness + 4] + b"UL" + raw[thickness + 6:],  # BytesLengthException, on access
        "absurd-length": raw[:series + 6] + b"\xff\x7f" + raw[series + 8:],
        "truncated": raw[: series + 3],
        "not-dicom": b"\x00" * 64 + b"hello",
        "uid-traversal": raw.replace(raw[series + 8: series + 8 + 10], b"../../tmp/"),
    }


def test_poison_pills_are_quarantined_and_the_indexer_goes_on(tmp_path: Path, small_head_ct):
    _, files = small_head_ct
    store = JobStore(tmp_path / "db.sqlite")
    metrics = Metrics()
    raw = files[0].read_bytes()
    bad = _mutations(raw)
    for i, (name, data) in enumerate(bad.items()):
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(data)
        store.add_instance(f"1.2.99.{i + 1}", CT, str(path), "FUZZ")
    store.add_instance("1.2.99.100", CT, str(files[0]), "MOD")  # the good one comes last
    indexer = Indexer(store, metrics)
    assert indexer.run_once() == len(bad) + 1
    assert store.unindexed_instances() == [], "nothing is left for a later pass to trip over"
    counts = store.instance_counts()
    assert counts.get(InstanceState.INDEXED) == 1, counts
    quarantined = {row["sop_instance_uid"]: row["reason"] for row in store.quarantined_instances()}
    assert sorted(quarantined) == [f"1.2.99.{i + 1}" for i in range(len(bad))], "every broken copy is set aside"
    assert all(reason for reason in quarantined.values()), "every quarantined instance says why"
    assert "ainode_instances_quarantined_total" in metrics.render().decode()
    for series in store.series_in_state(SeriesState.RECEIVED):
        assert "/" not in series.series_uid and len(series.series_uid) <= 64
    store.close()


def _config(tmp_path: Path, routes: str = "") -> object:
    text = f"""
[node]
data_dir = "{tmp_path / 'data'}"
[[destinations]]
name = "pacs"
host = "127.0.0.1"
port = 1
ae_title = "PACS"
{routes}
"""
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path)


def test_a_job_that_cannot_be_described_fails_and_does_not_block_the_queue(tmp_path: Path):
    config = _config(tmp_path)
    store = JobStore(tmp_path / "db.sqlite")
    spool = Spool(tmp_path / "spool")
    ids = []
    for n in (1, 2):
        uid = f"1.2.98.{n}"
        store.add_instance(uid + ".1", CT, "/x", "MOD")
        store.index_instance(uid + ".1", uid, "1.2.3", {}, 0.0)
        store.set_series_state(uid, SeriesState.COMPLETE)
        ids += store.route_series(uid, [("r", "head-ct-hematoma", ["pacs"])])
    for job_id in ids:  # the results folder cannot be made (a file is in the way)
        (spool.results / str(job_id)).write_bytes(b"")
    runner = Runner(config, store, spool, Metrics())
    try:
        runner._submit()
        runner._submit()
    finally:
        runner.stop()
    for job_id in ids:
        job = store.get_job(job_id)
        assert job.state == JobState.FAILED and job.stage == FailureStage.SPEC, job
        assert "FileExistsError" in job.reason
    store.close()


@pytest.fixture
def web(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    server = WebServer("127.0.0.1", 0, store, Metrics(), lambda: {"status": "ok"})
    server.start()
    yield f"http://127.0.0.1:{server.port}", store
    server.stop()
    store.close()


def test_bad_query_parameters_get_an_answer(web):
    url, _ = web
    assert httpx.get(f"{url}/api/jobs?limit=abc", timeout=5).status_code == 422
    assert httpx.get(f"{url}/api/jobs?limit=0", timeout=5).status_code == 422
    assert httpx.get(f"{url}/api/jobs?state=nonsense", timeout=5).status_code == 422
    assert "/api/jobs/{job_id}" in httpx.get(f"{url}/openapi.json", timeout=5).json()["paths"]
    assert httpx.get(f"{url}/api/jobs?limit=5", timeout=5).status_code == 200


def test_an_operator_reruns_a_failed_job(web):
    url, store = web
    store.add_instance("1.2.97.1.1", CT, "/x", "MOD")
    store.index_instance("1.2.97.1.1", "1.2.97.1", "1.2.3", {}, 0.0)
    store.set_series_state("1.2.97.1", SeriesState.COMPLETE)
    (job_id,) = store.route_series("1.2.97.1", [("r", "head-ct-hematoma", ["pacs"])])
    assert httpx.post(f"{url}/api/jobs/{job_id}/retry", timeout=5).status_code == 409, "queued: nothing to retry"
    store.claim_jobs("w", 1, 60)
    store.fail_job(job_id, FailureStage.INFERENCE, "RuntimeError: out of memory", owner="w")
    answer = httpx.post(f"{url}/api/jobs/{job_id}/retry", timeout=5)
    assert answer.status_code == 200 and answer.json()["requeued"] == 1
    assert store.get_job(job_id).state == JobState.QUEUED
    events = [e["state"] for e in httpx.get(f"{url}/api/jobs/{job_id}", timeout=5).json()["events"]]
    assert events == [JobState.QUEUED, JobState.RUNNING, JobState.FAILED, JobState.QUEUED]
    assert httpx.post(f"{url}/api/jobs/999/retry", timeout=5).status_code == 404


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.e2e
def test_model_workers_end_when_the_node_is_killed(tmp_path: Path):
    pacs = SimpleNamespace(dicom_port=free_port(), ae_title="PACS")
    routes = '[[routes]]\nname = "head"\nmodel = "head-ct-hematoma"\ndestinations = ["pacs"]\nmatch = { Modality = "CT" }\n'
    http_port, dicom_port = free_port(), free_port()
    node = NodeProcess(tmp_path, node_config(dicom_port, http_port, pacs, routes))  # type: ignore[arg-type]
    node.start(http_port)
    pid = node._proc.pid  # type: ignore[union-attr]
    workers = wait_for(lambda: _children(pid), 60, what="the model worker process")
    os.kill(pid, signal.SIGKILL)  # the node alone, as a crash would: not its process group
    node._proc.wait()  # type: ignore[union-attr]
    node._proc = None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    survivors = [w for w in workers if _alive(w)]
    for w in survivors:
        os.kill(w, signal.SIGKILL)
    assert not survivors, f"worker processes outlived the node: {survivors}"


def test_a_result_sent_back_to_the_node_is_not_processed_again(tmp_path: Path, small_head_ct):
    """Loop safety on the node's side: a PACS that forwards everything sends our results back."""
    _, files = small_head_ct
    store = JobStore(tmp_path / "db.sqlite")
    store.add_instance("1.2.96.1.1", CT, str(files[0]), "MOD")
    store.index_instance("1.2.96.1.1", "1.2.96.1", "1.2.3", {}, 0.0)
    store.set_series_state("1.2.96.1", SeriesState.COMPLETE)
    (job_id,) = store.route_series("1.2.96.1", [("r", "head-ct-hematoma", ["pacs"])])
    store.claim_jobs("w", 1, 60)
    own = pydicom.dcmread(files[1], stop_before_pixels=True).SOPInstanceUID
    store.job_written(job_id, [(own, CT, str(files[1]))], ["pacs"], owner="w")
    store.add_instance(own, CT, str(files[1]), "ORTHANC")  # the PACS forwards it back
    Indexer(store, Metrics()).run_once()
    (row,) = store.quarantined_instances()
    assert row["sop_instance_uid"] == own and "result object of this node" in row["reason"]
    assert store.series_counts() == {SeriesState.ROUTED: 1}, "no new series, no new job"
    store.close()


def test_incoming_datasets_are_written_on_the_spool_disk(tmp_path: Path):
    """pynetdicom's chunked receive writes through tempfile: the node points it at its spool."""
    import tempfile

    from node.service import Node

    config = Node.with_overrides(_config(tmp_path), http_port=0, dicom_port=0)
    leftover = tmp_path / "data" / "spool" / "incoming" / "cut-by-a-crash.dcm"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a dataset")
    before = tempfile.tempdir
    try:
        node = Node(config)
        assert Path(tempfile.gettempdir()) == tmp_path / "data" / "spool" / "incoming"
        assert not leftover.exists(), "leftovers of a crash are removed at start"
        node.web.stop()
        node.store.close()
    finally:
        tempfile.tempdir = before
