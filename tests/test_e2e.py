"""End to end: dcmtk storescu → ainode serve → a real Orthanc.

Each test runs real processes on free loopback ports: Orthanc from the Debian package
as the PACS, the node as ``python -m node.cli serve``, dcmtk's ``storescu`` as the
modality.
"""
from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from models.phantoms.head_ct import generate_head_ct, write_phantom
from tests.dicom_validation import dciodvfy_errors
from tests.sr_content import coded_values, numeric_values, referenced_sop_uids
from tests.support import NodeProcess, OrthancServer, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SLICES = 10
JAPANESE_NAME = "山田^太郎=ヤマダ^タロウ"
PATIENT_ID = "PID-583901"


ROUTES = """
[[routes]]
name = "head-ct-broken-model"
model = "hematoma-broken"
destinations = ["pacs"]
match = { Modality = "CT", SeriesDescription = "re:BROKEN" }

[[routes]]
name = "head-ct"
model = "head-ct-hematoma"
destinations = ["pacs"]
match = { Modality = "CT", BodyPartExamined = "HEAD", SeriesDescription = "re:^(?!.*BROKEN)" }
"""


def _start_node(workdir: Path, orthanc: OrthancServer) -> NodeProcess:
    broken = workdir / "broken.onnx"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"this is not an ONNX graph")
    extra = f'[models.hematoma-broken]\npack = "head-ct-hematoma"\nweights = "{broken}"\n'
    return start_node(workdir, orthanc, ROUTES, extra=extra)


def _write_series(out: Path, seed: int, hematoma: bool, description: str | None = None) -> tuple[pydicom.Dataset, list[Path]]:
    phantom = generate_head_ct(seed=seed, slices=SLICES, hematoma=hematoma,
                               patient_name=JAPANESE_NAME, patient_id=PATIENT_ID)
    if description:
        for ds in phantom.datasets:
            ds.SeriesDescription = description
    files = sorted(p for p in write_phantom(phantom, out) if p.suffix == ".dcm")
    return phantom.datasets[0], files


def _job_for(node: NodeProcess, series_uid: str, states: tuple[str, ...], timeout: float = 120) -> dict:
    def done():
        jobs = [j for j in node.jobs() if j["series_uid"] == series_uid]
        return jobs[0] if jobs and jobs[0]["state"] in states else None

    return wait_for(done, timeout, what=f"job of series {series_uid} in {states}")


def _results(orthanc: OrthancServer, study_uid: str, source_series_uid: str) -> dict[str, list[pydicom.Dataset]]:
    return orthanc.results_by_class(study_uid, source_series_uid)


def _assert_valid(datasets: list[pydicom.Dataset], tmp_path: Path) -> None:
    for ds in datasets:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], f"{ds.SOPClassUID} fails dciodvfy"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    node = _start_node(tmp_path_factory.mktemp("node"), pacs)
    yield node
    node.stop()


def test_hematoma_series_yields_seg_sr_and_sc_in_the_source_study(node, pacs, tmp_path):
    source, files = _write_series(tmp_path / "in", seed=11, hematoma=True)
    storescu(files, node.dicom_port)
    job = _job_for(node, source.SeriesInstanceUID, ("delivered", "failed"))
    assert job["state"] == "delivered", job
    assert job["engine"] == "onnxruntime-cpu"

    results = _results(pacs, source.StudyInstanceUID, source.SeriesInstanceUID)
    assert set(results) == {SEG, COMPREHENSIVE_3D_SR, SECONDARY_CAPTURE}
    (seg,) = results[SEG]
    (sr,) = results[COMPREHENSIVE_3D_SR]
    scs = results[SECONDARY_CAPTURE]
    _assert_valid([seg, sr, *scs], tmp_path)

    assert coded_values(sr)["Intracranial hemorrhage"] == ["Present"] or "Present" in sum(coded_values(sr).values(), [])
    affected = numeric_values(sr)
    counts = {k: v[0] for k, v in affected.items()}
    assert counts["Number of hematoma patches"] > 0
    assert counts["Number of slices with hematoma"] == len(scs)
    assert seg.NumberOfFrames == SLICES
    assert np.asarray(seg.pixel_array).any()

    source_uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    assert referenced_sop_uids(sr) <= source_uids | {seg.SOPInstanceUID}
    for sc in scs:
        assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in source_uids

    for ds in (seg, sr, *scs):
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.PatientName == source.PatientName == JAPANESE_NAME
        assert ds.PatientID == PATIENT_ID
        assert "ISO_IR 192" in ds.SpecificCharacterSet
        assert ds.ContributingEquipmentSequence[-1].DeviceUID

    metrics = node.metrics()
    assert re.search(r'ainode_egress_results_total\{destination="pacs",outcome="delivered"\} [1-9]', metrics)
    assert re.search(r'ainode_inference_seconds_count\{engine="onnxruntime-cpu",model="head-ct-hematoma"\} [1-9]', metrics)


def test_series_without_hematoma_yields_absent_and_an_empty_seg(node, pacs, tmp_path):
    source, files = _write_series(tmp_path / "in", seed=12, hematoma=False)
    storescu(files, node.dicom_port)
    job = _job_for(node, source.SeriesInstanceUID, ("delivered", "failed"))
    assert job["state"] == "delivered", job
    results = _results(pacs, source.StudyInstanceUID, source.SeriesInstanceUID)
    (sr,) = results[COMPREHENSIVE_3D_SR]
    (seg,) = results[SEG]
    _assert_valid([sr, seg], tmp_path)
    assert "Absent" in sum(coded_values(sr).values(), [])
    assert "Present" not in sum(coded_values(sr).values(), [])
    assert seg.NumberOfFrames == SLICES
    assert not np.asarray(seg.pixel_array).any()
    assert SECONDARY_CAPTURE not in results


def test_failing_model_is_recorded_and_the_node_keeps_serving(node, pacs, tmp_path):
    broken, broken_files = _write_series(tmp_path / "broken", seed=13, hematoma=True, description="BROKEN head")
    storescu(broken_files, node.dicom_port)
    job = _job_for(node, broken.SeriesInstanceUID, ("delivered", "failed"))
    assert job["state"] == "failed"
    assert job["stage"] == "engine"
    assert job["reason"]
    detail = httpx.get(f"{node.http_url}/api/jobs/{job['id']}", timeout=10).json()
    assert [e["state"] for e in detail["events"]][-1] == "failed"
    assert re.search(r'ainode_job_failures_total\{model="hematoma-broken",stage="engine"\} 1', node.metrics())

    good, good_files = _write_series(tmp_path / "good", seed=14, hematoma=True)
    storescu(good_files, node.dicom_port)
    assert _job_for(node, good.SeriesInstanceUID, ("delivered", "failed"))["state"] == "delivered"


def test_logs_carry_no_patient_name_or_id(node):
    text = node.log_text()
    assert "series complete" in text, "the log was captured"
    for secret in (PATIENT_ID, "山田", "ヤマダ", "Yamada"):
        assert secret not in text


def test_sigkill_after_success_loses_nothing(pacs, tmp_path):
    workdir = tmp_path / "node"
    node = _start_node(workdir, pacs)
    source, files = _write_series(tmp_path / "in", seed=21, hematoma=True)
    half = len(files) // 2
    try:
        storescu(files[:half], node.dicom_port)  # Success returned for these
        node.kill()  # a crash mid-series
        node.start(int(node.http_url.rsplit(":", 1)[1]))
        storescu(files[half:], node.dicom_port)
        job = _job_for(node, source.SeriesInstanceUID, ("delivered", "failed"))
        assert job["state"] == "delivered", job
    finally:
        node.stop()
    results = _results(pacs, source.StudyInstanceUID, source.SeriesInstanceUID)
    (seg,) = results[SEG]
    assert seg.NumberOfFrames == len(files), "every acknowledged instance survived the crash"


def test_results_wait_for_a_stopped_pacs(tmp_path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    node = _start_node(tmp_path / "node", orthanc)
    source, files = _write_series(tmp_path / "in", seed=31, hematoma=True)
    try:
        orthanc.stop()
        storescu(files, node.dicom_port)
        job = _job_for(node, source.SeriesInstanceUID, ("written", "delivered", "failed"))
        assert job["state"] == "written"

        def retried():
            results = httpx.get(f"{node.http_url}/api/jobs/{job['id']}", timeout=10).json()["results"]
            return results and all(r["attempts"] >= 2 and r["state"] == "pending" for r in results)

        wait_for(retried, 30, what="delivery retries")
        orthanc.start()
        job = _job_for(node, source.SeriesInstanceUID, ("delivered", "failed"), timeout=60)
        assert job["state"] == "delivered"
        written = httpx.get(f"{node.http_url}/api/jobs/{job['id']}", timeout=10).json()["results"]
        stored = _results(orthanc, source.StudyInstanceUID, source.SeriesInstanceUID)
        assert {SEG, COMPREHENSIVE_3D_SR} <= set(stored)
        assert {r["sop_instance_uid"] for r in written} == {
            ds.SOPInstanceUID for datasets in stored.values() for ds in datasets
        }
    finally:
        node.stop()
        orthanc.stop()
