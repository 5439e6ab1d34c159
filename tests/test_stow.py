"""STOW-RS into the node: the same acceptance as C-STORE, answered per PS3.18.

dicomweb-client is the client, as a DICOMweb archive or a viewer would use it; the
results go to a real Orthanc.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from requests.exceptions import HTTPError

from models.phantoms.head_ct import generate_head_ct, write_phantom
from node.states import JobState
from node.http.stow import StowRequestError, dicom_parts, stow_response, StoredInstance
from tests.support import HEAD_CT_ROUTE, OrthancServer, start_node, wait_for

ROUTES = HEAD_CT_ROUTE


def test_multipart_parts_and_the_response_statuses():
    boundary = "XyZ"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + b"ONE" + (
        f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + b"TWO" + (
        f"\r\n--{boundary}--\r\n").encode()
    parts = list(dicom_parts(f'multipart/related; type="application/dicom"; boundary={boundary}', body))
    assert parts == [b"ONE", b"TWO"]
    with pytest.raises(StowRequestError) as refused:
        list(dicom_parts("application/json", b"{}"))
    assert refused.value.status == 415
    ok, failed = StoredInstance("1.2", "1.2.3"), StoredInstance("1.2", "1.2.4", 0xC000)
    assert stow_response([ok])[0] == 200
    assert stow_response([ok, failed])[0] == 202
    status, body = stow_response([failed])
    assert status == 409 and body["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]


@pytest.mark.e2e
def test_a_series_stored_with_stow_rs_gets_its_results(tmp_path: Path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    node = start_node(tmp_path / "node", orthanc, ROUTES, quiet_seconds=1.0)
    try:
        phantom = generate_head_ct(seed=31, slices=5, hematoma=True)
        files = sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm")
        datasets = [pydicom.dcmread(p) for p in files]
        client = DICOMwebClient(url=f"{node.http_url}/dicom-web")
        answer = client.store_instances(datasets)
        stored = [str(item.ReferencedSOPInstanceUID) for item in answer.ReferencedSOPSequence]
        assert sorted(stored) == sorted(str(ds.SOPInstanceUID) for ds in datasets)
        assert "FailedSOPSequence" not in answer

        again = client.store_instances(datasets[:1])  # stored once: a duplicate is still a success
        assert len(again.ReferencedSOPSequence) == 1

        broken = pydicom.dcmread(files[0])
        broken.SOPInstanceUID = "1..2"  # not a UID
        other_study = pydicom.dcmread(files[1])
        other_study.StudyInstanceUID = "1.2.3.4"
        other_study.SOPInstanceUID = "1.2.3.4.5"
        with pytest.raises(HTTPError) as conflict:
            client.store_instances([broken])
        assert conflict.value.response.status_code == 409
        with pytest.raises(HTTPError) as mismatch:
            client.store_instances([other_study], study_instance_uid=str(datasets[0].StudyInstanceUID))
        assert mismatch.value.response.status_code == 409

        series_uid = str(datasets[0].SeriesInstanceUID)
        job = wait_for(lambda: next((j for j in node.jobs() if j["series_uid"] == series_uid
                                     and j["state"] in (JobState.DELIVERED, JobState.FAILED)), None),
                       90, what="the job of the STOW-RS series")
        assert job["state"] == JobState.DELIVERED, job
        results = orthanc.results_by_class(str(datasets[0].StudyInstanceUID), series_uid)
        assert results, "results in Orthanc"
        assert httpx.post(f"{node.http_url}/dicom-web/studies", content=b"x",
                          headers={"content-type": "application/json"}, timeout=10).status_code == 415
    finally:
        node.stop()
        orthanc.stop()
