"""No patient name or ID in anything a node process prints (stdout and stderr, its workers' included).

The source is made to provoke third-party warnings that quote values: a one-component
patient name (highdicom: 'The string "..." is unlikely to represent ...'), an invalid
birth date and sex (pydicom: "Invalid value for VR ..."). They must reach the node's JSON
log as scrubbed records, never as plain text with the values.
"""
from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from support import HEAD_CT_ROUTE, OrthancServer, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

NAME = "Zyxwvutsrqpon"
PATIENT_ID = "PHI7734120"
BIRTH_DATE = "1950-03-17"


def test_names_and_ids_stay_out_of_the_node_output(tmp_path: Path):
    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.FrameOfReferenceUID = generate_uid()
    ds.BodyPartExamined = "HEAD"
    ds.PatientName, ds.PatientID, ds.OtherPatientIDs = NAME, PATIENT_ID, PATIENT_ID
    ds.PatientBirthDate, ds.PatientSex = BIRTH_DATE, "Male"
    path = tmp_path / "phi.dcm"
    ds.save_as(path, enforce_file_format=True)

    orthanc = OrthancServer(tmp_path / "orthanc").start()
    node = start_node(tmp_path / "node", orthanc, HEAD_CT_ROUTE)
    try:
        storescu([path], node.dicom_port)
        jobs = wait_for(lambda: [j for j in node.jobs() if j["series_uid"] == ds.SeriesInstanceUID
                                 and j["state"] in ("delivered", "failed")] or None, 180, what="the job")
        assert jobs[0]["state"] == "delivered", jobs
        results = orthanc.results_by_class(ds.StudyInstanceUID, ds.SeriesInstanceUID)
        assert any(str(r.PatientName) == NAME for group in results.values() for r in group), "the results keep the name"
    finally:
        node.stop()
        orthanc.stop()

    output = node.log_text()  # the node's stdout and stderr, its worker processes' included
    for value in (NAME, PATIENT_ID, BIRTH_DATE, BIRTH_DATE.replace("-", "")):
        assert value not in output, f"{value!r} printed by the node"
    lines = [line for line in output.splitlines() if line.strip()]
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not not_json, f"lines outside the JSON log: {not_json[:5]}"
    warnings = [json.loads(line) for line in lines if '"py.warnings"' in line]
    assert warnings, "third-party warnings reach the JSON log (scrubbed)"
