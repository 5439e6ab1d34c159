"""``complete_on_release``: a radiograph is complete when the association (or STOW-RS request) that
brought it ends, not a quiet period later. Real storescu, the real CR chest of pydicom-data, the
node's real listener, indexer, assembler and HTTP server."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from node.pipeline.assemble import Assembler
from node.config import AssemblerConfig, load_config, parse_config
from node.pipeline.index import Indexer
from node.ingest import IngestServer
from node.metrics import Metrics
from node.pipeline.stages import Pipeline
from node.states import Stage
from node.pipeline.route import Router
from node.store.spool import Spool
from node.states import SeriesState
from node.store import JobStore
from node.http.web import WebServer

_QUIET = 10.0


def _routes(complete_on_release: bool) -> dict:
    return {"destinations": [{"name": "pacs", "host": "127.0.0.1", "port": 4242, "ae_title": "PACS"}],
            "routes": [{"name": "cxr", "model": "cxr-nodule", "destinations": ["pacs"],
                        "match": {"Modality": ["CR", "DX"], "BodyPartExamined": "CHEST"},
                        "complete_on_release": complete_on_release}]}


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest):
    config = parse_config(_routes(request.param), tmp_path)
    store = JobStore(tmp_path / "db.sqlite")
    metrics = Metrics()
    pipeline = Pipeline()
    assembler = Assembler(AssemblerConfig(quiet_seconds=_QUIET, poll_seconds=0.5), store, Router(config.routes),
                          metrics, pipeline)
    indexer = Indexer(store, metrics, pipeline)
    pipeline.attach(Stage.INDEX, indexer)
    pipeline.attach(Stage.ASSEMBLE, assembler)
    server = IngestServer("AINODE", "127.0.0.1", 0, store, Spool(tmp_path / "spool"), metrics,
                          pipeline)
    web = WebServer("127.0.0.1", 0, store, metrics, lambda: {"status": "ok"}, acceptor=server.acceptor)
    for part in (assembler, indexer, server, web):
        part.start()
    yield server, store, web
    for part in (web, server, indexer, assembler):
        part.stop()
    store.close()


def _radiograph(tmp_path: Path) -> tuple[Path, str]:
    """The real CR chest under new UIDs (a series of one image)."""
    ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    path = tmp_path / "cr.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, str(ds.SeriesInstanceUID)


def _seconds_to_complete(store: JobStore, series_uid: str, since: float, limit: float) -> float | None:
    while time.monotonic() - since < limit:
        row = store.get_series(series_uid)
        if row is not None and row.state is not SeriesState.RECEIVED:
            return time.monotonic() - since
        time.sleep(0.05)
    return None


@pytest.mark.parametrize("node", [True], indirect=True)
def test_a_radiograph_sent_by_storescu_completes_when_the_association_is_released(node, tmp_path):
    server, store, _ = node
    path, series_uid = _radiograph(tmp_path)
    subprocess.run(["storescu", "-aet", "CR-ROOM-1", "-aec", "AINODE", "127.0.0.1", str(server.port), str(path)],
                   check=True, capture_output=True, timeout=60)
    released = time.monotonic()  # storescu exits once its A-RELEASE is answered
    took = _seconds_to_complete(store, series_uid, released, limit=_QUIET)
    assert took is not None and took < 1.5, f"complete after {took} s, not within ~1 s of the release"
    events = store.series_events(series_uid)
    assert any("released by their sender" in (e["detail"] or "") for e in events)
    assert store.get_series(series_uid).state is SeriesState.ROUTED


@pytest.mark.parametrize("node", [True], indirect=True)
def test_the_end_of_a_stow_request_counts_as_a_release(node, tmp_path):
    _, store, web = node
    path, series_uid = _radiograph(tmp_path)
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + path.read_bytes() + b"\r\n--b--\r\n"
    answer = httpx.post(f"http://127.0.0.1:{web.port}/dicom-web/studies", content=body, timeout=30,
                        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'})
    assert answer.status_code == 200
    took = _seconds_to_complete(store, series_uid, time.monotonic(), limit=_QUIET)
    assert took is not None and took < 1.5


@pytest.mark.parametrize("node", [False], indirect=True)
def test_without_the_option_the_radiograph_waits_its_quiet_period(node, tmp_path):
    server, store, _ = node
    path, series_uid = _radiograph(tmp_path)
    subprocess.run(["storescu", "-aet", "CR-ROOM-1", "-aec", "AINODE", "127.0.0.1", str(server.port), str(path)],
                   check=True, capture_output=True, timeout=60)
    assert _seconds_to_complete(store, series_uid, time.monotonic(), limit=3.0) is None


def test_the_radiograph_routes_complete_on_release_by_default():
    for config in (load_config(None), load_config(Path(__file__).resolve().parents[1] / "config.toml")):
        on_release = {r.name for r in config.routes if r.complete_on_release}
        radiograph = {r.name for r in config.routes if set(r.match.get("Modality", ())) & {"CR", "DX"}}
        assert radiograph and on_release == radiograph
