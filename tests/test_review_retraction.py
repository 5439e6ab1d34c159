"""The radiologist's verdict and the retraction of results (issue 30), below the end to end test.

* A verdict is recorded with who and when, in the job's history, in the API and in
  ``ainode_result_reviews_total``; a rejection needs one of the reasons; the endpoint has
  the API's authentication and cross-site guard (real node HTTP server, real requests).
* A rejection (and a supersede) retracts the delivered results through the outbox: a real
  Orthanc (``type = "orthanc"``) deletes them, a real DIMSE storage SCP receives an IOCM
  rejection note that ``dciodvfy`` accepts and that references exactly them; a
  retraction to a destination that is down is retried and dead-lettered like a delivery,
  and replayed; ``retract_superseded = false`` leaves superseded results in place.
* The store's schema migrates to the version with reviews and outbox kinds, on SQLite and
  PostgreSQL.
"""
from __future__ import annotations

import io
import re
import sqlite3
import time
from pathlib import Path

import httpx
import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from dicom_validation import dciodvfy_errors
import tomllib

from node.config import Config, DestinationConfig, EgressConfig, RouteConfig, parse_config
from node.egress.outbox import Outbox
from node.http.auth import AccessMode, BearerAuth
from node.http.web import WebServer
from node.metrics import Metrics
from node.states import JobState, OutboxKind, ResultState, RetractCause, SeriesState
from node.store import JobStore, SqliteJobStore
from node.store import database
from node.store.reviews import RejectReason, Verdict
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture
from tests.support import OrthancServer, free_port, wait_for

TOKEN = "review-token-4b1d9e"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"


class _Receiver:
    """A real DIMSE storage SCP (pynetdicom) that keeps every dataset it receives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[pydicom.Dataset] = []
        self._ae = AE(ae_title="PACS")
        for context in AllStoragePresentationContexts:
            self._ae.add_supported_context(context.abstract_syntax)
        self._server = None

    def start(self) -> "_Receiver":
        def handle(event):
            ds = event.dataset
            ds.file_meta = event.file_meta
            self.received.append(ds)
            return 0x0000

        self._server = self._ae.start_server(("127.0.0.1", self.port), block=False,
                                             evt_handlers=[(evt.EVT_C_STORE, handle)])
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


def _job(store: JobStore, series: str, route: str = "head", destinations=("pacs",)) -> int:
    store.add_instance(f"{series}.1", "1.2.840.10008.5.1.4.1.1.2", "/x", "MOD")
    store.index_instance(f"{series}.1", series, "1.2.3", {"Modality": "CT"}, 0.0)
    store.set_series_state(series, SeriesState.COMPLETE)
    (job_id,) = store.route_series(series, [(route, "head-ct-hematoma", list(destinations))])
    store.claim_jobs("w", 1, 60)
    return job_id


def _delivered_job(store: JobStore, series: str, files: list[Path], destinations=("pacs",),
                   route: str = "head") -> tuple[int, list[str]]:
    """A job whose ``files`` (real DICOM objects) were delivered to ``destinations`` (in the store)."""
    job_id = _job(store, series, route, destinations)
    objects = []
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        objects.append((str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(path)))
    store.job_written(job_id, objects, list(destinations), owner="w")
    return job_id, [o[0] for o in objects]


def _deliver_all(store: JobStore, job_id: int) -> None:
    for row in store.job_results(job_id):
        store.result_delivered(row.id)


# -- the verdict in the store -------------------------------------------------------------------------
def test_a_review_is_recorded_with_who_when_and_why_and_a_rejection_marks_the_delivered_results(tmp_path):
    store = JobStore(tmp_path / "db.sqlite")
    job_id = _job(store, "1.2.50.1")
    store.job_written(job_id, [("1.2.50.9", KOS, "/r/a.dcm"), ("1.2.50.8", KOS, "/r/b.dcm")], ["pacs"], owner="w")
    first, second = store.job_results(job_id)
    store.result_delivered(first.id)  # the second is still pending (not being sent)
    before = time.time()
    review = store.add_review(job_id, Verdict.REJECTED, "dr House (session 1a2b)", RejectReason.MISSED_FINDING)
    assert review is not None and review.retracting == 1 and review.at >= before
    (recorded,) = store.job_reviews(job_id)
    assert (recorded.verdict, recorded.reason, recorded.reviewer) == (
        Verdict.REJECTED, RejectReason.MISSED_FINDING, "dr House (session 1a2b)")
    events = [(e["state"], e["detail"]) for e in store.job_events(job_id)]
    assert events[-2:] == [("rejected", "by dr House (session 1a2b): missed finding"),
                           ("delivered", None)]  # its unsent result dropped: nothing is pending any more
    states = {r.sop_instance_uid: r.state for r in store.job_results(job_id)}
    assert states == {"1.2.50.9": ResultState.DELIVERED, "1.2.50.8": ResultState.SUPERSEDED}  # never sent now
    assert [m.result.sop_instance_uid for m in store.marked_results("pacs")] == ["1.2.50.9"]
    assert store.get_job(job_id).state is JobState.DELIVERED
    assert store.add_review(job_id + 99, Verdict.ACCEPTED, "x") is None
    with pytest.raises(ValueError):
        store.add_review(job_id, Verdict.REJECTED, "x")  # a rejection needs its reason
    with pytest.raises(ValueError):
        store.add_review(job_id, Verdict.ACCEPTED, "x", RejectReason.IMAGE_QUALITY)


def test_the_reasons_are_the_four_the_radiologist_picks_from():
    assert [r.value for r in RejectReason] == ["wrong finding", "missed finding", "wrong patient or series",
                                              "image quality"]


# -- the verdict through the API -----------------------------------------------------------------------
@pytest.fixture
def api(tmp_path: Path):
    store = JobStore(tmp_path / "db.sqlite")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    metrics = Metrics()
    server = WebServer("127.0.0.1", 0, store, metrics, lambda: {"status": "ok", "disk": {}},
                       auth=BearerAuth(AccessMode.TOKEN, token_file))
    server.start()
    yield f"http://127.0.0.1:{server.port}", store, metrics
    server.stop()
    store.close()


def test_the_review_endpoint_records_who_counts_the_verdict_and_keeps_the_api_guards(api):
    url, store, metrics = api
    delivered = _job(store, "1.2.51.1")
    store.job_written(delivered, [], ["pacs"], owner="w")  # nothing to deliver: delivered at once
    queued_series = "1.2.51.2"
    store.add_instance(f"{queued_series}.1", "1.2.840.10008.5.1.4.1.1.2", "/x", "MOD")
    store.index_instance(f"{queued_series}.1", queued_series, "1.2.3", {}, 0.0)
    store.set_series_state(queued_series, SeriesState.COMPLETE)
    (queued,) = store.route_series(queued_series, [("head", "head-ct-hematoma", ["pacs"])])
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    reject = {"verdict": "rejected", "reason": "wrong finding"}

    assert httpx.post(f"{url}/api/jobs/{delivered}/review", json=reject).status_code == 401
    assert httpx.post(f"{url}/api/jobs/{delivered}/review", json=reject,
                      headers={**bearer, "Origin": "http://evil.example"}).status_code == 403
    assert httpx.post(f"{url}/api/jobs/{delivered}/review", json={"verdict": "rejected"},
                      headers=bearer).status_code == 422  # no reason
    assert httpx.post(f"{url}/api/jobs/{delivered}/review", json={"verdict": "rejected", "reason": "bored"},
                      headers=bearer).status_code == 422  # not one of the reasons
    assert httpx.post(f"{url}/api/jobs/{queued}/review", json=reject, headers=bearer).status_code == 409
    assert httpx.post(f"{url}/api/jobs/999/review", json=reject, headers=bearer).status_code == 404
    assert store.job_reviews(delivered) == []

    answer = httpx.post(f"{url}/api/jobs/{delivered}/review", json=reject, headers=bearer)
    assert answer.status_code == 200, answer.text
    assert answer.json()["reviewer"] == "API token" and answer.json()["reason"] == "wrong finding"

    login = httpx.post(f"{url}/login", data={"token": TOKEN, "next": "/"}, headers={"Origin": url})
    cookies = {"ainode_session": login.cookies["ainode_session"]}
    accept = {"verdict": "accepted", "reviewer": "Dr. Quinn\n"}
    assert httpx.post(f"{url}/api/jobs/{delivered}/review", json=accept, cookies=cookies).status_code == 403
    answer = httpx.post(f"{url}/api/jobs/{delivered}/review", json=accept, cookies=cookies, headers={"Origin": url})
    assert answer.status_code == 200, answer.text
    who = answer.json()["reviewer"]
    assert re.fullmatch(r"Dr\. Quinn \(session [0-9a-f]{10}\)", who), who
    assert login.cookies["ainode_session"] not in who

    detail = httpx.get(f"{url}/api/jobs/{delivered}", headers=bearer).json()
    assert [(r["verdict"], r["reviewer"]) for r in detail["reviews"]] == [("rejected", "API token"), ("accepted", who)]
    assert [e["state"] for e in detail["events"]][-2:] == ["rejected", "accepted"]
    text = httpx.get(f"{url}/metrics").text
    assert 'ainode_result_reviews_total{model="head-ct-hematoma",verdict="rejected"} 1.0' in text
    assert 'ainode_result_reviews_total{model="head-ct-hematoma",verdict="accepted"} 1.0' in text
    page = httpx.get(f"{url}/jobs/{delivered}", cookies=cookies).text
    assert "wrong finding" in page and "Dr. Quinn" in page and 'id="reject"' in page


# -- retraction through the outbox, to real destinations -------------------------------------------------
@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory):
    orthanc = OrthancServer(tmp_path_factory.mktemp("archive")).start()
    yield orthanc
    orthanc.stop()


def _in_orthanc(orthanc: OrthancServer, sop_uid: str) -> bool:
    return bool(httpx.post(f"{orthanc.url}/tools/lookup", content=sop_uid, timeout=10).json())


def _config(orthanc_url: str, dimse_port: int, *, retract_superseded: bool = True, max_attempts: int = 3) -> Config:
    return Config(
        destinations=(DestinationConfig("archive", type="orthanc", url=orthanc_url),
                      DestinationConfig("pacs", "127.0.0.1", dimse_port, "PACS")),
        routes=(RouteConfig("head", "head-ct-hematoma", ("archive", "pacs"), {},
                            retract_superseded=retract_superseded),),
        egress=EgressConfig(max_attempts=max_attempts, backoff_seconds=0.2, backoff_max_seconds=0.5, timeout_seconds=5),
    )


def _copies(files: list[Path], out: Path) -> list[Path]:
    """The files under new SOP Instance UIDs (each test its own objects in the shared archive)."""
    out.mkdir()
    copies = []
    for i, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        copies.append(out / f"{i}.dcm")
        ds.save_as(copies[-1])
    return copies


def test_a_rejection_deletes_from_orthanc_and_sends_a_valid_rejection_note_to_dimse(tmp_path, small_head_ct, archive):
    _, files = small_head_ct
    files = _copies(files[:3], tmp_path / "results")
    store = JobStore(tmp_path / "db.sqlite")
    receiver = _Receiver(free_port()).start()
    metrics = Metrics()
    outbox = Outbox(_config(archive.url, receiver.port), store, metrics)
    outbox.start()
    try:
        job_id, uids = _delivered_job(store, "1.2.52.1", files, ("archive", "pacs"))
        outbox.wake()
        wait_for(lambda: store.get_job(job_id).state is JobState.DELIVERED, 30, what="delivery")
        assert all(_in_orthanc(archive, uid) for uid in uids) and len(receiver.received) == 3
        store.add_review(job_id, Verdict.REJECTED, "dr", RejectReason.WRONG_FINDING)
        retracted = lambda: all(r.state in (ResultState.RETRACTED, ResultState.DELIVERED)  # noqa: E731
                                and (r.kind is OutboxKind.RETRACT or r.state is ResultState.RETRACTED)
                                for r in store.job_results(job_id))
        wait_for(retracted, 30, what="retraction")
    finally:
        outbox.stop()
        receiver.stop()
    assert not any(_in_orthanc(archive, uid) for uid in uids)
    (note,) = receiver.received[3:]
    assert note.SOPClassUID == KOS
    title = note.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == (
        "113001", "DCM", "Rejected for Quality Reasons")
    evidence = {(study.StudyInstanceUID, series.SeriesInstanceUID, sop.ReferencedSOPInstanceUID)
                for study in note.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert evidence == {(s.StudyInstanceUID, s.SeriesInstanceUID, s.SOPInstanceUID) for s in sources}
    assert note.StudyInstanceUID == sources[0].StudyInstanceUID and note.PatientID == sources[0].PatientID
    path = tmp_path / "note.dcm"
    note.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []
    items = [r for r in store.job_results(job_id) if r.kind is OutboxKind.RETRACT]
    assert sorted(r.destination for r in items) == ["archive", "pacs"]
    assert all(r.state is ResultState.DELIVERED for r in items)
    assert "retracted" in [e["state"] for e in store.job_events(job_id)]
    text = metrics.render().decode()
    assert 'ainode_retractions_total{destination="pacs",outcome="retracted"} 1.0' in text
    assert 'ainode_retractions_total{destination="archive",outcome="retracted"} 1.0' in text


def test_a_retraction_is_retried_dead_lettered_and_replayed_like_a_delivery(tmp_path, small_head_ct, archive):
    _, files = small_head_ct
    files = _copies(files[:2], tmp_path / "results")
    store = JobStore(tmp_path / "db.sqlite")
    port = free_port()
    outbox = Outbox(_config(archive.url, port, max_attempts=2), store, Metrics())
    job_id, uids = _delivered_job(store, "1.2.53.1", files, ("pacs",))
    _deliver_all(store, job_id)  # delivered earlier; the PACS is down now
    assert store.rerun_job(job_id, "re-run requested by an operator")  # superseded: retracted (the default)
    pacs = outbox._config.destinations[1]
    outbox._retractions.plan(pacs)
    (item,) = [r for r in store.job_results(job_id) if r.kind is OutboxKind.RETRACT]
    assert referenced(item.path) == set(uids)
    while store.job_results(job_id)[-1].state is ResultState.PENDING:
        time.sleep(max(0.0, store.next_result_due("pacs") - time.time()))
        outbox.deliver_due(pacs)
    item = [r for r in store.job_results(job_id) if r.kind is OutboxKind.RETRACT][0]
    assert item.state is ResultState.DEAD and item.attempts == 2 and item.last_error
    receiver = _Receiver(port).start()
    try:
        assert store.requeue_dead(job_id) == 1
        outbox.deliver_due(pacs)
    finally:
        receiver.stop()
    assert [str(ds.SOPClassUID) for ds in receiver.received] == [KOS]
    assert {r.state for r in store.job_results(job_id) if r.kind is OutboxKind.DELIVER} == {ResultState.RETRACTED}


def test_a_dicomweb_destination_receives_the_rejection_note_by_stow_rs(tmp_path, small_head_ct, archive):
    _, files = small_head_ct
    files = _copies(files[:2], tmp_path / "results")
    store = JobStore(tmp_path / "db.sqlite")
    config = Config(destinations=(DestinationConfig("web", type="dicomweb", url=f"{archive.url}/dicom-web"),),
                    egress=EgressConfig(max_attempts=3, backoff_seconds=0.2, backoff_max_seconds=0.5,
                                        timeout_seconds=5))
    outbox = Outbox(config, store, Metrics())
    web = config.destinations[0]
    job_id, uids = _delivered_job(store, "1.2.58.1", files, ("web",))
    outbox.deliver_due(web)
    assert store.get_job(job_id).state is JobState.DELIVERED and all(_in_orthanc(archive, uid) for uid in uids)
    store.add_review(job_id, Verdict.REJECTED, "dr", RejectReason.WRONG_PATIENT_OR_SERIES)
    assert outbox._retractions.plan(web) == 1
    outbox.deliver_due(web)
    (item,) = [r for r in store.job_results(job_id) if r.kind is OutboxKind.RETRACT]
    assert item.state is ResultState.DELIVERED, item.last_error
    (found,) = httpx.post(f"{archive.url}/tools/lookup", content=item.sop_instance_uid, timeout=10).json()
    note = pydicom.dcmread(io.BytesIO(httpx.get(f"{archive.url}/instances/{found['ID']}/file", timeout=10).content))
    assert note.ConceptNameCodeSequence[0].CodeValue == "113001"
    assert referenced_in(note) == set(uids)
    texts = [item.TextValue for item in note.ContentSequence
             if item.ValueType == "TEXT" and item.ConceptNameCodeSequence[0].CodeValue == "113012"]
    assert texts == ["Rejected by a radiologist: wrong patient or series."]  # the Key Object Description
    assert all(_in_orthanc(archive, uid) for uid in uids), "STOW-RS cannot delete: the note is what withdraws them"


def referenced_in(note: pydicom.Dataset) -> set[str]:
    return {sop.ReferencedSOPInstanceUID for study in note.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}


def referenced(path: str) -> set[str]:
    from node.egress.retraction import referenced_instances

    return set(referenced_instances(path))


def test_superseded_results_stay_where_the_route_says_so(tmp_path, small_head_ct, archive):
    _, files = small_head_ct
    store = JobStore(tmp_path / "db.sqlite")
    metrics = Metrics()
    outbox = Outbox(_config(archive.url, free_port(), retract_superseded=False), store, metrics)
    job_id, _ = _delivered_job(store, "1.2.54.1", files[:2], ("pacs",))
    _deliver_all(store, job_id)
    assert store.rerun_job(job_id)
    assert len(store.marked_results("pacs")) == 2
    assert outbox._retractions.plan(outbox._config.destinations[1]) == 0
    assert store.marked_results("pacs") == []
    assert all(r.kind is OutboxKind.DELIVER and r.state is ResultState.DELIVERED for r in store.job_results(job_id))
    assert 'ainode_retractions_total{destination="pacs",outcome="kept"} 2.0' in metrics.render().decode()
    # a rejection retracts whatever the route says
    store.add_review(job_id, Verdict.REJECTED, "dr", RejectReason.IMAGE_QUALITY)
    assert outbox._retractions.plan(outbox._config.destinations[1]) == 1


def test_a_late_image_marks_what_the_superseded_job_delivered(tmp_path):
    store = JobStore(tmp_path / "db.sqlite")
    job_id = _job(store, "1.2.55.1")
    store.job_written(job_id, [("1.2.55.9", KOS, "/r/a.dcm")], ["pacs"], owner="w")
    _deliver_all(store, job_id)
    assert store.reopen_series("1.2.55.1", "instance 1.2.55.1.2 arrived late") == [job_id]
    assert store.get_job(job_id).state is JobState.SUPERSEDED
    (marked,) = store.marked_results("pacs")
    assert marked.cause is RetractCause.SUPERSEDED and marked.route == "head"
    note = marked.result.object._replace(sop_instance_uid="1.2.55.99", path="/r/note.dcm")
    assert store.queue_retraction(job_id, "pacs", note, [marked.result.id]) is not None
    twice = note._replace(sop_instance_uid="1.2.55.98", path="/r/note2.dcm")
    assert store.queue_retraction(job_id, "pacs", twice, [marked.result.id]) is None  # another outbox was first
    assert store.marked_results("pacs") == []


def test_the_route_option_parses_and_defaults_to_retracting():
    base = '[[destinations]]\nname = "pacs"\nhost = "h"\nport = 104\nae_title = "P"\n'
    route = '[[routes]]\nname = "r"\nmodel = "head-ct-hematoma"\ndestinations = ["pacs"]\n'
    def parsed(text: str) -> Config:
        return parse_config(tomllib.loads(text), Path("."))

    assert parsed(base + route).routes[0].retract_superseded is True
    assert parsed(base + route + "retract_superseded = false\n").routes[0].retract_superseded is False


# -- the schema --------------------------------------------------------------------------------------------
def test_a_store_of_schema_4_gains_reviews_and_outbox_kinds(tmp_path):
    """A store made before reviews and retractions (schema 4) migrates through every later step."""
    path = tmp_path / "db.sqlite"
    db = sqlite3.connect(path)
    for statement in database._statements(database._SCHEMA + database._2_TO_3 + database._3_TO_4):
        db.execute(statement)
    db.execute("PRAGMA user_version=4")
    db.commit()
    db.close()
    store = SqliteJobStore(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == database.SCHEMA_VERSION >= 5
    job_id = _job(store, "1.2.56.1")
    store.job_written(job_id, [("1.2.56.9", KOS, "/r/a.dcm")], ["pacs"], owner="w")
    assert store.job_results(job_id)[0].kind is OutboxKind.DELIVER
    assert store.add_review(job_id, Verdict.ACCEPTED, "dr") is not None


def test_reviews_and_retraction_items_on_postgresql(postgres_server):  # noqa: F811
    from node.store.postgres import PostgresJobStore

    store = PostgresJobStore(postgres_server.create_database())
    try:
        job_id = _job(store, "1.2.57.1")
        store.job_written(job_id, [("1.2.57.9", KOS, "/r/a.dcm")], ["pacs"], owner="w")
        _deliver_all(store, job_id)
        review = store.add_review(job_id, Verdict.REJECTED, "dr", RejectReason.WRONG_PATIENT_OR_SERIES)
        assert review is not None and review.retracting == 1
        (marked,) = store.marked_results("pacs")
        item = store.queue_retraction(job_id, "pacs", marked.result.object._replace(
            sop_instance_uid="1.2.57.99", path="/r/note.dcm"), [marked.result.id])
        store.result_delivered(item)
        states = {r.kind: r.state for r in store.job_results(job_id)}
        assert states == {OutboxKind.DELIVER: ResultState.RETRACTED, OutboxKind.RETRACT: ResultState.DELIVERED}
        assert [r.verdict for r in store.job_reviews(job_id)] == [Verdict.REJECTED]
    finally:
        store.close()
