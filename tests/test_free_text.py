"""No API answer and no page carries a free-text attribute unless ``[http] show_free_text``.

A technologist may type anything into a description ("CT for <the patient's name>"). A CT
slice with a name planted in every free-text attribute (the free-text routing attributes the
node records: Study and Series Description, Protocol Name, Manufacturer; and others it should
never read) is sent with STOW-RS to a real node's HTTP API, routed to a job, and every GET
route of the app (enumerated, so a new one is covered) is fetched as JSON and as a page:
the name appears in none. With ``show_free_text = true`` the series answer shows them.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from starlette.routing import Mount

from node.config import HttpConfig
from node.config.sections import parse_http
from node.http.auth import AccessMode, BearerAuth
from node.http.pages.routes import STATIC_DIR
from node.http.web import CODED_ATTRIBUTES, WebServer
from node.ingest import InstanceAcceptor
from node.metrics import Metrics
from node.pipeline.index import ROUTING_KEYWORDS
from node.states import FailureStage, SeriesState
from node.store import JobStore
from node.store.spool import Spool

CT = "1.2.840.10008.5.1.4.1.1.2"
NAME = "Zyxwova^Quenby"  # a name no page or library text contains by chance
FREE_TEXT = {  # LO/SH/ST/LT attributes a person types; the first four are routing attributes the node records
    "StudyDescription": f"CT for {NAME}",
    "SeriesDescription": f"{NAME} head",
    "ProtocolName": f"{NAME} protocol",
    "Manufacturer": f"{NAME} Medical",
    "InstitutionName": f"{NAME} Hospital",
    "StationName": NAME,
    "ImageComments": f"patient {NAME}",
    "StudyComments": NAME,
    "AdditionalPatientHistory": NAME,
    "ManufacturerModelName": NAME,
    "OperatorsName": NAME,
    "ReferringPhysicianName": NAME,
    "PatientName": NAME,
}
SERIES = "1.2.826.0.1.3680043.10.9999.2"


def _found(text: str) -> bool:
    return re.search(r"zyxwova|quenby", text, re.IGNORECASE) is not None


def _instance() -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CT, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.9999.1", SERIES
    ds.PatientID = "PID-0042"
    ds.Modality, ds.BodyPartExamined, ds.ImageType = "CT", "HEAD", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness, ds.InstanceNumber = "5", 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = (np.arange(256, dtype=np.int16).reshape(16, 16) * 8).tobytes()
    for keyword, value in FREE_TEXT.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _stow(url: str, data: bytes) -> None:
    boundary = "plantedname"
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
    answer = httpx.post(f"{url}/dicom-web/studies", content=body, timeout=10,
                        headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    assert answer.status_code == 200, answer.text
    assert not _found(answer.text)


def _node(tmp_path: Path, http: HttpConfig) -> tuple[str, JobStore, WebServer]:
    store = JobStore(tmp_path / "db.sqlite")
    metrics = Metrics()
    acceptor = InstanceAcceptor(store, Spool(tmp_path / "spool"), metrics)
    server = WebServer("127.0.0.1", 0, store, metrics, lambda: {"status": "ok", "disk": {}, "accepting_instances": True},
                       acceptor=acceptor, auth=BearerAuth(AccessMode.ANONYMOUS), http=http,
                       models=["head-ct-hematoma"])
    server.start()
    return f"http://127.0.0.1:{server.port}", store, server


@pytest.fixture
def planted(tmp_path: Path) -> Iterator[tuple[str, JobStore, WebServer, dict[str, int]]]:
    url, store, server = _node(tmp_path, HttpConfig())
    try:
        _stow(url, _instance())
        series = store.get_series(SERIES)
        assert series is not None
        recorded = {k for k, v in series.attrs.items() if _found(str(v))}
        assert recorded == {"StudyDescription", "SeriesDescription", "ProtocolName", "Manufacturer"}, series.attrs
        store.set_series_state(SERIES, SeriesState.COMPLETE)
        failed, running = store.route_series(SERIES, [("head", "head-ct-hematoma", ["pacs"]),
                                                      ("head2", "brain-mr", ["pacs"])])
        store.claim_jobs("w", 2, 60)
        store.fail_job(failed, FailureStage.INFERENCE, "RuntimeError: engine crashed", owner="w")
        yield url, store, server, {"job_id": failed, "running": running}
    finally:
        server.stop()
        store.close()


def _get_routes(server: WebServer) -> Iterator[str]:
    """Path formats of every GET route (included routers opened)."""
    def walk(routes: list, prefix: str = "") -> Iterator[str]:
        for route in routes:
            if isinstance(route, Mount):
                continue
            original = getattr(route, "original_router", None)
            if original is not None:
                yield from walk(original.routes, prefix + getattr(getattr(route, "include_context", None), "prefix", ""))
            elif "GET" in (getattr(route, "methods", None) or ()):
                yield prefix + route.path_format
    return walk(server.app.routes)


def test_every_routing_keyword_is_known_as_coded_or_free_text():
    """A routing keyword added later is free text (withheld) unless someone lists it as coded here and in web.py."""
    free = {"StudyDescription", "SeriesDescription", "ProtocolName", "Manufacturer"}
    assert set(ROUTING_KEYWORDS) == CODED_ATTRIBUTES | free


def test_no_answer_and_no_page_carries_free_text(planted):
    url, store, server, jobs = planted
    values = {"job_id": str(jobs["job_id"]), "series_uid": SERIES, "index": "0", "layer": "seg"}
    fetched = []
    for path in _get_routes(server):
        params = set(re.findall(r"{(\w+)", path))
        assert params <= values.keys(), f"{path}: add a value for {params - values.keys()} to this test"
        concrete = path.format(**{k: values[k] for k in params})
        for job_id in {jobs["job_id"], jobs["running"]} if "job_id" in params else {None}:
            if job_id is not None:
                concrete = path.format(**{**{k: values[k] for k in params}, "job_id": job_id})
            for accept in ("application/json", "text/html"):
                answer = httpx.get(url + concrete, headers={"Accept": accept}, timeout=10)
                assert answer.status_code in (200, 303, 404), (concrete, answer.status_code, answer.text[:200])
                assert not _found(answer.text), (concrete, accept)
                assert not re.search(rb"zyxwova|quenby", answer.content, re.IGNORECASE), concrete
                fetched.append((concrete, answer.status_code))
    for extra in ("/api/jobs?limit=10000", f"/api/study-routes?study_uid={'1.2.826.0.1.3680043.10.9999.1'}",
                  "/ui/status-body", *(f"/ui/static/{p.name}" for p in STATIC_DIR.iterdir())):
        answer = httpx.get(url + extra, timeout=10)
        assert answer.status_code == 200 and not _found(answer.text), extra
    ok = {path for path, status in fetched if status == 200}
    assert {"/", f"/jobs/{jobs['job_id']}", f"/api/series/{SERIES}", f"/api/jobs/{jobs['job_id']}",
            f"/jobs/{jobs['job_id']}/slices/0.png", "/openapi.json", "/metrics"} <= ok, ok
    series = httpx.get(f"{url}/api/series/{SERIES}", timeout=10).json()
    assert series["attrs"]["Modality"] == "CT" and series["attrs"]["BodyPartExamined"] == "HEAD"
    assert series["attrs"]["Rows"] == 16 and "ImageType" in series["attrs"]
    assert series["withheld_attrs"] == ["Manufacturer", "ProtocolName", "SeriesDescription", "StudyDescription"]


def test_show_free_text_shows_it(tmp_path: Path):
    assert parse_http({}, tmp_path).show_free_text is False
    http = parse_http({"show_free_text": True}, tmp_path)
    url, store, server = _node(tmp_path, http)
    try:
        _stow(url, _instance())
        series = httpx.get(f"{url}/api/series/{SERIES}", timeout=10).json()
        assert series["attrs"]["SeriesDescription"] == f"{NAME} head"
        assert series["attrs"]["StudyDescription"] == f"CT for {NAME}" and series["withheld_attrs"] == []
    finally:
        server.stop()
        store.close()
