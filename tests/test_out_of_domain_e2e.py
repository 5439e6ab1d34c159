"""Issue 30's acceptance, end to end: a real radiograph nobody here made is not answered.

pydicom-data's real chest CR (``RG1``: a Philips CR, MONOCHROME1, Pixel Spacing 0\\0), as CR
and re-encoded as DX, turned, cropped and at other resolutions, sent by dcmtk ``storescu`` to
``ainode serve`` with both CXR routes on their defaults (``on_out_of_domain`` left out:
``withhold``). In a real Orthanc each series gets, from each CXR model, one report that says the
image was not evaluated because it is outside what the model was validated on, with the score
and the threshold, and nothing else: no SEG, no overlay, no report that claims nodules or
pneumonia. The job API shows the score; ``/metrics`` counts the withheld jobs.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from benchmarks.e2e import real_radiograph
from models.training.applicability import radiograph_variants
from tests.support import OrthancServer, start_node, wait_for

pytestmark = pytest.mark.e2e

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SR = "1.2.840.10008.5.1.4.1.1.88.34"
SC = "1.2.840.10008.5.1.4.1.1.7"
STORESCU = "/usr/bin/storescu" if Path("/usr/bin/storescu").exists() else "storescu"
CXR_MATCH = '{ Modality = ["DX", "CR"], BodyPartExamined = "CHEST" }'
ROUTES = "".join(f"""
[[routes]]
name = "{model}"
model = "{model}"
destinations = ["pacs"]
match = {CXR_MATCH}
complete_on_release = true
""" for model in ("cxr-nodule", "cxr-pneumonia"))
VARIANTS = ("dx", "rotated-90", "rotated-180", "crop-centre", "crop-top", "half-resolution", "quarter-resolution")
"""The real CR re-encoded as DX, turned, cropped and at other resolutions (besides as it is, in JPEG 2000)."""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, pacs: OrthancServer):
    node = start_node(tmp_path_factory.mktemp("node"), pacs, ROUTES, quiet_seconds=2.0)
    yield node
    node.stop()


@pytest.fixture(scope="module")
def sent(node, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Every case sent by storescu: case → (study UID, series UID)."""
    folder = tmp_path_factory.mktemp("sources")
    as_is, _ = real_radiograph(folder / "as-is.dcm")  # RG1_J2KR as encoded (JPEG 2000 lossless)
    cr = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    cr.BodyPartExamined = "CHEST"
    paths = {"as-is": as_is}
    for label, ds in radiograph_variants(cr).items():
        if label in VARIANTS:
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            paths[label] = folder / f"{label}.dcm"
            ds.save_as(paths[label], enforce_file_format=True)
    for options, files in ((["-xv"], [as_is]), ([], [p for k, p in paths.items() if k != "as-is"])):
        result = subprocess.run([STORESCU, *options, "-aet", "MODALITY", "-aec", "AINODE", "127.0.0.1",
                                 str(node.dicom_port), *map(str, files)], capture_output=True, text=True, timeout=180)
        assert result.returncode == 0, result.stdout + result.stderr
    uids = {}
    for label, path in paths.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        uids[label] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
    return uids


def _jobs(node, series_uid: str) -> list[dict]:
    def done():
        jobs = [j for j in node.jobs() if j["series_uid"] == series_uid and j["state"] in ("delivered", "failed")]
        return jobs if len(jobs) == 2 else None

    jobs = wait_for(done, 240, interval=0.5, what=f"both CXR jobs of {series_uid}")
    return [httpx.get(f"{node.http_url}/api/jobs/{j['id']}", timeout=10).json() for j in jobs]


def _texts(ds: pydicom.Dataset) -> list[str]:
    return [str(e.value) for e in ds.iterall() if e.keyword in ("TextValue", "CodeMeaning")]


@pytest.mark.parametrize("case", ["as-is", *VARIANTS])
def test_the_real_radiograph_is_not_answered_and_the_pacs_is_told_why(node, pacs, sent, case):
    study_uid, series_uid = sent[case]
    jobs = _jobs(node, series_uid)
    for job in jobs:
        assert job["state"] == "delivered", (job["model"], job["stage"], job["reason"])
        assert job["out_of_domain_action"] == "withhold", (case, job["model"])
        assert job["applicability_score"] > job["applicability_threshold"] > 0
        assert len(job["results"]) == 1, "one report, nothing else"
    objects = wait_for(lambda: (found := pacs.results_by_class(study_uid, series_uid)).get(SR, []) and
                       len(found[SR]) >= 2 and found, 30, what="the two reports in Orthanc")
    assert set(objects) == {SR}, f"{case}: no SEG, no overlay: {sorted(objects)}"
    assert len(objects[SR]) == 2
    for report in objects[SR]:
        texts = _texts(report)
        assert "Not evaluated: outside what the model was validated on" in texts, texts
        label = next(t for t in texts if t.startswith("Not evaluated: image outside validated domain"))
        score, threshold = map(float, re.search(r"\(([\d.]+) > ([\d.]+)\)", label).groups())
        assert score > threshold
        assert not any(re.match(r"(Nodule|Pneumonia|Lung nodule)", t) for t in texts), texts
        assert "Present" not in texts, "no report claims a finding"
        assert any(e.keyword == "GraphicType" for e in report.iterall()), "a region: OHIF 3.13 needs one"


def test_metrics_count_the_withheld_jobs_and_the_drift(node, sent):
    for _, series_uid in sent.values():
        _jobs(node, series_uid)
    text = node.metrics()
    for model in ("cxr-nodule", "cxr-pneumonia"):
        count = re.search(rf'ainode_out_of_domain_total{{action="withhold",model="{model}"}} ([\d.]+)', text)
        assert count and float(count.group(1)) == len(sent), model
        assert re.search(rf'ainode_applicability_score_count{{model="{model}"}} {len(sent)}\.0', text)
        assert f'ainode_drift_out_of_domain_ratio{{model="{model}"}} 1.0' in text
