"""End to end (issue 30): a radiologist rejects a job in Chromium, and a late image supersedes one;
both retract the delivered results from every destination.

Real processes on loopback: the node (``ainode serve``, with a token: the browser logs in
and its session is who rejects), two Orthancs from the Debian package (``archive``, a
``type = "orthanc"`` destination reached over REST, and ``pacs``, a DIMSE destination),
dcmtk's ``storescu`` as the modality, and Debian's Chromium driven by Playwright.

After the rejection (and after the supersede) the job's objects are gone from the
archive, and the PACS holds an IHE IOCM rejection note (a KOS titled
``(113001, DCM, "Rejected for Quality Reasons")``) that ``dciodvfy`` accepts and that
references exactly the objects the PACS had received from that job, by study, series and
SOP Instance.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import pydicom
import pytest
from playwright.sync_api import sync_playwright

from models.phantoms.head_ct import generate_head_ct, write_phantom
from tests.dicom_validation import dciodvfy_errors
from tests.support import HEAD_CT_ROUTE, NodeProcess, OrthancServer, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "retraction-e2e-token-7c41d2"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SLICES = 8


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory):
    orthanc = OrthancServer(tmp_path_factory.mktemp("archive")).start()
    yield orthanc
    orthanc.stop()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer, archive: OrthancServer):
    workdir = tmp_path_factory.mktemp("node")
    (workdir / "token").write_text(TOKEN)
    routes = HEAD_CT_ROUTE.replace('destinations = ["pacs"]', 'destinations = ["archive", "pacs"]')
    assert 'destinations = ["archive", "pacs"]' in routes
    extra = (f'[http]\ntoken_file = "{workdir / "token"}"\n\n'
             f'[[destinations]]\nname = "archive"\ntype = "orthanc"\nurl = "{archive.url}"\n')
    node = start_node(workdir, pacs, routes, extra=extra)
    yield node
    node.stop()


def _api(node: NodeProcess, path: str) -> dict:
    answer = httpx.get(f"{node.http_url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    answer.raise_for_status()
    return answer.json()


def _job(node: NodeProcess, series_uid: str, generation: int = 0) -> dict:
    def delivered():
        jobs = [j for j in _api(node, "/api/jobs")["jobs"]
                if j["series_uid"] == series_uid and j["generation"] == generation]
        if jobs and jobs[0]["state"] == "failed":
            raise AssertionError(f"job failed: {jobs[0]}")
        return jobs[0] if jobs and jobs[0]["state"] == "delivered" else None

    return wait_for(delivered, 240, what=f"job of series {series_uid} (generation {generation}) delivered")


def _delivered(node: NodeProcess, job_id: int, destination: str) -> set[str]:
    """The SOP Instance UIDs of the job's results delivered (or since retracted) to ``destination``."""
    return {r["sop_instance_uid"] for r in _api(node, f"/api/jobs/{job_id}")["results"]
            if r["destination"] == destination and r["kind"] == "deliver" and r["state"] in ("delivered", "retracted")}


def _held(orthanc: OrthancServer, sop_uid: str) -> bool:
    return bool(httpx.post(f"{orthanc.url}/tools/lookup", content=sop_uid, timeout=10).json())


def _rejection_notes(orthanc: OrthancServer, study_uid: str) -> list[pydicom.Dataset]:
    notes = []
    for inst in orthanc.instances_of_study(study_uid):
        ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(inst["ID"])))
        if ds.SOPClassUID == KOS and ds.ConceptNameCodeSequence[0].CodeValue == "113001":
            notes.append(ds)
    return notes


def _note_for(orthanc: OrthancServer, study_uid: str, retracted: set[str]) -> pydicom.Dataset:
    """The rejection note in ``orthanc`` that references ``retracted`` (waited for)."""
    def found():
        return next((n for n in _rejection_notes(orthanc, study_uid) if _references(n) & retracted), None)

    return wait_for(found, 60, what="the rejection note at the DIMSE destination")


def _references(note: pydicom.Dataset) -> set[str]:
    return {sop.ReferencedSOPInstanceUID for study in note.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}


def _check_note(note: pydicom.Dataset, retracted: set[str], pacs: OrthancServer, source: pydicom.Dataset,
                tmp_path: Path) -> None:
    title = note.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == (
        "113001", "DCM", "Rejected for Quality Reasons")
    assert _references(note) == retracted, "the note references exactly the retracted instances"
    by_uid = {}
    for inst in pacs.instances_of_study(source.StudyInstanceUID):
        ds = pydicom.dcmread(io.BytesIO(pacs.instance_file(inst["ID"])), stop_before_pixels=True)
        by_uid[ds.SOPInstanceUID] = ds
    for study in note.CurrentRequestedProcedureEvidenceSequence:
        assert study.StudyInstanceUID == source.StudyInstanceUID
        for series in study.ReferencedSeriesSequence:
            for sop in series.ReferencedSOPSequence:
                held = by_uid[sop.ReferencedSOPInstanceUID]
                assert (series.SeriesInstanceUID, sop.ReferencedSOPClassUID) == (
                    held.SeriesInstanceUID, held.SOPClassUID)
    assert note.PatientID == source.PatientID and note.StudyInstanceUID == source.StudyInstanceUID
    path = tmp_path / "note.dcm"
    note.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []


def _reject_in_chromium(node: NodeProcess, job_id: int) -> None:
    """Log in with the token, open the job's results page, reject it for a wrong finding."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{node.http_url}/jobs/{job_id}")  # redirected to the login page
            page.fill("input[name=token]", TOKEN)
            with page.expect_navigation():
                page.locator("form button[type=submit], form input[type=submit]").first.click()
            assert page.url.endswith(f"/jobs/{job_id}"), page.url
            page.fill("#review input[name=reviewer]", "Dr. Cuddy")
            page.select_option("#reject-reason", "wrong finding")
            with page.expect_navigation():
                page.locator("#reject").click()
            page.wait_for_selector("#verdict .pill.rejected")
            assert "wrong finding" in page.locator("#verdict").inner_text()
            assert not errors, errors
        finally:
            browser.close()


def test_a_job_rejected_in_chromium_is_retracted_from_orthanc_and_the_dimse_pacs(node, pacs, archive, tmp_path):
    phantom = generate_head_ct(seed=31, slices=SLICES, hematoma=True, patient_id="PID-RETRACT-1")
    files = sorted(p for p in write_phantom(phantom, tmp_path / "in") if p.suffix == ".dcm")
    source = phantom.datasets[0]
    storescu(files, node.dicom_port)
    job = _job(node, source.SeriesInstanceUID)
    in_archive, in_pacs = _delivered(node, job["id"], "archive"), _delivered(node, job["id"], "pacs")
    assert in_archive and in_archive == in_pacs
    assert all(_held(archive, uid) for uid in in_archive)

    _reject_in_chromium(node, job["id"])

    detail = _api(node, f"/api/jobs/{job['id']}")
    (review,) = detail["reviews"]
    assert review["verdict"] == "rejected" and review["reason"] == "wrong finding"
    assert review["reviewer"].startswith("Dr. Cuddy (session ")
    wait_for(lambda: not any(_held(archive, uid) for uid in in_archive), 60, what="results deleted from the archive")
    note = _note_for(pacs, source.StudyInstanceUID, in_pacs)
    _check_note(note, in_pacs, pacs, source, tmp_path)
    wait_for(lambda: {r["state"] for r in _api(node, f"/api/jobs/{job['id']}")["results"]
                      if r["kind"] == "deliver"} == {"retracted"}, 30, what="results retracted in the store")
    assert 'ainode_result_reviews_total{model="head-ct-hematoma",verdict="rejected"} 1.0' in node.metrics()


def test_a_late_image_that_supersedes_a_job_retracts_its_old_objects(node, pacs, archive, tmp_path):
    phantom = generate_head_ct(seed=32, slices=SLICES, hematoma=True, patient_id="PID-RETRACT-2")
    files = sorted(p for p in write_phantom(phantom, tmp_path / "in") if p.suffix == ".dcm")
    source = phantom.datasets[0]
    storescu(files[:-1], node.dicom_port)
    first = _job(node, source.SeriesInstanceUID)
    old_archive, old_pacs = _delivered(node, first["id"], "archive"), _delivered(node, first["id"], "pacs")
    assert old_archive and all(_held(archive, uid) for uid in old_archive)

    storescu(files[-1:], node.dicom_port)  # the late image: the series reopens, the job is superseded
    second = _job(node, source.SeriesInstanceUID, generation=1)
    wait_for(lambda: not any(_held(archive, uid) for uid in old_archive), 60, what="old results deleted")
    note = _note_for(pacs, source.StudyInstanceUID, old_pacs)
    _check_note(note, old_pacs, pacs, source, tmp_path)
    new_archive = _delivered(node, second["id"], "archive")
    assert new_archive and not new_archive & old_archive
    assert all(_held(archive, uid) for uid in new_archive), "the new run's results stand"
    assert _api(node, f"/api/jobs/{first['id']}")["state"] == "superseded"
