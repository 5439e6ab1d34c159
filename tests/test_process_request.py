"""Process a past study on request: retrieved from a real Orthanc (REST and WADO-RS) into the node."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pydicom
import pytest

from models.phantoms.head_ct import generate_head_ct, write_phantom
from node.states import JobState
from tests.support import HEAD_CT_ROUTE, OrthancServer, start_node, storescu, wait_for

pytestmark = pytest.mark.e2e

ROUTES = HEAD_CT_ROUTE


def test_a_study_held_only_by_the_pacs_is_processed_on_request(tmp_path: Path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    sources = f"""
[[sources]]
name = "pacs-rest"
type = "orthanc"
url = "{orthanc.url}"

[[sources]]
name = "pacs-web"
type = "dicomweb"
url = "{orthanc.url}/dicom-web"
"""
    node = start_node(tmp_path / "node", orthanc, ROUTES, quiet_seconds=1.0, extra=sources)
    try:
        phantom = generate_head_ct(seed=41, slices=5, hematoma=True)
        files = sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm")
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        study_uid, series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        storescu(files, orthanc.dicom_port, called_ae=orthanc.ae_title)  # the study is in the PACS only
        assert node.jobs() == []

        answer = httpx.post(f"{node.http_url}/api/studies/{study_uid}/process", json={"source": "pacs-rest"},
                            timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == 5
        job = wait_for(lambda: next((j for j in node.jobs() if j["state"] in (JobState.DELIVERED, JobState.FAILED)),
                                    None), 90, what="the job of the retrieved study")
        assert job["state"] == JobState.DELIVERED and job["series_uid"] == series_uid, job
        assert orthanc.results_by_class(study_uid, series_uid), "results beside the study in the PACS"

        # Again, from the CLI and over WADO-RS: the node holds the instances, so it runs the job again.
        cli = subprocess.run([sys.executable, "-m", "node.cli", "process", study_uid, "--source", "pacs-web",
                              "--node", node.http_url], capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr
        assert "5 already held" in cli.stdout and f"[{job['id']}]" in cli.stdout
        wait_for(lambda: next((j for j in node.jobs() if j["id"] == job["id"] and j["runs"] == 2
                               and j["state"] == JobState.DELIVERED), None), 90, what="the job run again")

        unknown = httpx.post(f"{node.http_url}/api/studies/1.2.3.999/process", json={"source": "pacs-rest"},
                             timeout=60)
        assert unknown.status_code == 502 and "no study" in unknown.json()["detail"]
        assert httpx.post(f"{node.http_url}/api/studies/{study_uid}/process", json={"source": "nowhere"},
                          timeout=60).status_code == 404
    finally:
        node.stop()
        orthanc.stop()
