"""``[[peers]] sends_whole_series`` (issue 32): the release of an association from a peer that
forwards whole, stable series (the demo Orthanc, a PACS routing rule) completes the series it
brought, without the quiet period; a series split over two sends is still reopened by the
late images. Real storescu, the node's real listener, indexer and assembler."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from node.config import AssemblerConfig, parse_config
from node.ingest import IngestServer
from node.metrics import Metrics
from node.pipeline.assemble import Assembler
from node.pipeline.index import Indexer
from node.pipeline.route import Router
from node.pipeline.stages import Pipeline
from node.states import JobState, SeriesState, Stage
from node.store import JobStore
from node.store.spool import Spool

_QUIET = 10.0
_PEER = "ORTHANC"


@pytest.fixture
def node(tmp_path: Path):
    config = parse_config({
        "destinations": [{"name": "pacs", "host": "127.0.0.1", "port": 4242, "ae_title": "PACS"}],
        "routes": [{"name": "head", "model": "head-ct-hematoma", "destinations": ["pacs"], "match": {"Modality": "CT"}}],
        "peers": [{"ae_title": _PEER, "host": "127.0.0.1", "sends_whole_series": True}],
    }, tmp_path)
    store = JobStore(tmp_path / "db.sqlite")
    metrics = Metrics()
    pipeline = Pipeline()
    assembler = Assembler(AssemblerConfig(quiet_seconds=_QUIET, poll_seconds=0.5), store,
                          Router(config.routes, config.peers), metrics, pipeline)
    indexer = Indexer(store, metrics, pipeline)
    pipeline.attach(Stage.INDEX, indexer)
    pipeline.attach(Stage.ASSEMBLE, assembler)
    server = IngestServer("AINODE", "127.0.0.1", 0, store, Spool(tmp_path / "spool"), metrics, pipeline)
    for part in (assembler, indexer, server):
        part.start()
    yield server, store
    for part in (server, indexer, assembler):
        part.stop()
    store.close()


def _series(folder: Path, n: int) -> tuple[list[Path], str]:
    """``n`` CT images of one new series (pydicom's CT_small under new UIDs)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    paths = []
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = i + 1
        paths.append(folder / f"ct{i}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths, str(series_uid)


def _send(server: IngestServer, title: str, paths: list[Path]) -> float:
    """storescu from ``title``; returns when its A-RELEASE was answered (``time.monotonic()``)."""
    subprocess.run(["storescu", "-aet", title, "-aec", "AINODE", "127.0.0.1", str(server.port), *map(str, paths)],
                   check=True, capture_output=True, timeout=60)
    return time.monotonic()


def _wait_state(store: JobStore, series_uid: str, since: float, limit: float,
                state: SeriesState = SeriesState.ROUTED) -> float | None:
    while time.monotonic() - since < limit:
        row = store.get_series(series_uid)
        if row is not None and row.state is state:
            return time.monotonic() - since
        time.sleep(0.05)
    return None


def test_the_release_of_a_whole_series_peer_completes_the_series(node, tmp_path):
    server, store = node
    paths, series_uid = _series(tmp_path / "a", 6)
    took = _wait_state(store, series_uid, _send(server, _PEER, paths), limit=_QUIET)
    assert took is not None and took < 1.5, f"routed {took} s after the release, not within ~1 s"
    assert any("released by their sender" in (e["detail"] or "") for e in store.series_events(series_uid))
    assert store.get_series(series_uid).instance_count == 6


def test_another_sender_still_waits_the_quiet_period(node, tmp_path):
    server, store = node
    paths, series_uid = _series(tmp_path / "b", 3)
    assert _wait_state(store, series_uid, _send(server, "CT-ROOM-1", paths), limit=3.0) is None


def test_a_split_send_is_reopened_by_its_late_images(node, tmp_path):
    """The first half completes at its release and its job starts; the second half reopens the
    series (the late-image rule) and completes it again, with every image."""
    server, store = node
    paths, series_uid = _series(tmp_path / "c", 6)
    assert _wait_state(store, series_uid, _send(server, _PEER, paths[:3]), limit=_QUIET) is not None
    (job,) = store.claim_jobs("test:1:a", 1, 60.0)  # a worker took the first half's job
    second = _send(server, _PEER, paths[3:])
    while time.monotonic() - second < _QUIET and len(store.jobs_for_series(series_uid)) < 2:
        time.sleep(0.05)  # reopened by the late images, then complete at the release again
    took = time.monotonic() - second
    assert took < 1.5, f"the second half completed the series {took} s after its release"
    series = store.get_series(series_uid)
    assert series.generation == 1 and series.instance_count == 6 and series.state is SeriesState.ROUTED
    details = [e["detail"] or "" for e in store.series_events(series_uid)]
    assert any(d.startswith("reopened") for d in details) and details[-2] == "6 instances, released by their sender"
    assert store.get_job(job.id).state is JobState.SUPERSEDED
    assert [j.state for j in store.jobs_for_series(series_uid)] == [JobState.SUPERSEDED, JobState.QUEUED]
