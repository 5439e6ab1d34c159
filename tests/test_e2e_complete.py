"""Complete means complete, end to end: a late image runs the job again on the whole series.

dcmtk storescu → ainode serve → a real Orthanc. The first part of a series is sent and
processed; the rest arrives after the results were delivered. The node runs the job again
on every image, supersedes the first job, and the new objects go into the same result
series in Orthanc as new instances.
"""
from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest

from models.phantoms.head_ct import generate_head_ct, write_phantom
from node.states import JobState
from tests.support import HEAD_CT_ROUTE, OrthancServer, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
ROUTES = HEAD_CT_ROUTE


def _series_jobs(node, series_uid: str) -> list[dict]:
    return httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=10).json()["jobs"]


def _segs(orthanc: OrthancServer, study_uid: str, source_series: str) -> list[pydicom.Dataset]:
    return orthanc.results_by_class(study_uid, source_series).get(SEG, [])


def test_a_late_image_reruns_the_job_on_the_whole_series(tmp_path: Path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    node = start_node(tmp_path / "node", orthanc, ROUTES, quiet_seconds=2.0)
    try:
        phantom = generate_head_ct(seed=11, slices=8, hematoma=True)
        files = sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm")
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        series_uid, study_uid = str(first.SeriesInstanceUID), str(first.StudyInstanceUID)

        storescu(files[:5], node.dicom_port)
        wait_for(lambda: [j for j in _series_jobs(node, series_uid) if j["state"] == JobState.DELIVERED], 90,
                 what="the first job on 5 of 8 images")
        (seg_before,) = wait_for(lambda: _segs(orthanc, study_uid, series_uid), 30, what="the first SEG")
        assert len(seg_before.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 5

        storescu(files[5:], node.dicom_port)  # the rest of the series, after its results went out

        def _rerun_delivered():
            jobs = _series_jobs(node, series_uid)
            done = [j for j in jobs if j["generation"] == 1 and j["state"] in (JobState.DELIVERED, JobState.FAILED)]
            return (jobs, done[0]) if done else None

        jobs, rerun = wait_for(_rerun_delivered, 120, what="the job run again on the whole series")
        assert rerun["state"] == JobState.DELIVERED, rerun
        assert [j["state"] for j in jobs if j["generation"] == 0] == [JobState.SUPERSEDED]

        segs = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(_segs(orthanc, study_uid, series_uid)), 30,
                        what="the new SEG in Orthanc")
        new = next(s for s in segs if s.SOPInstanceUID != seg_before.SOPInstanceUID)
        assert len(new.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 8, "the new job saw every image"
        assert new.SeriesInstanceUID == seg_before.SeriesInstanceUID, "same result series, a new instance"
        assert "ainode_series_reopened_total 1.0" in node.metrics()
        events = httpx.get(f"{node.http_url}/api/jobs/{rerun['id']}", timeout=10).json()["events"]
        assert "supersedes jobs" in events[0]["detail"]
    finally:
        node.stop()
        orthanc.stop()
