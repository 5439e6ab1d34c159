"""A ``dimse`` source: the study is retrieved by C-GET from a real Orthanc, only the requested routes run."""
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

ROUTES = HEAD_CT_ROUTE + """
[[routes]]
name = "head-ct-copy"
model = "head-ct-hematoma"
destinations = ["pacs"]
match = { Modality = "CT", BodyPartExamined = "HEAD" }
"""


def test_a_study_is_retrieved_by_c_get_and_only_the_requested_route_runs(tmp_path: Path):
    orthanc = OrthancServer(tmp_path / "orthanc").start()
    source = f"""
[[sources]]
name = "pacs-dimse"
type = "dimse"
host = "127.0.0.1"
port = {orthanc.dicom_port}
ae_title = "{orthanc.ae_title}"
"""
    node = start_node(tmp_path / "node", orthanc, ROUTES, quiet_seconds=1.0, extra=source)
    try:
        phantom = generate_head_ct(seed=43, slices=5, hematoma=True)
        files = sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm")
        study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        storescu(files, orthanc.dicom_port, called_ae=orthanc.ae_title)  # in the PACS only

        answer = httpx.post(f"{node.http_url}/api/studies/{study_uid}/process",
                            json={"source": "pacs-dimse", "routes": ["head-ct"]}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == 5
        job = wait_for(lambda: next((j for j in node.jobs() if j["state"] in (JobState.DELIVERED, JobState.FAILED)),
                                    None), 120, what="the job of the retrieved study")
        assert job["state"] == JobState.DELIVERED and job["route"] == "head-ct", job
        assert [j["route"] for j in node.jobs()] == ["head-ct"], "the other matching route did not run"

        cli = subprocess.run([sys.executable, "-m", "node.cli", "process", study_uid, "--source", "pacs-dimse",
                              "--route", "head-ct", "--node", node.http_url], capture_output=True, text=True,
                             timeout=300)
        assert cli.returncode == 0, cli.stderr
        assert "5 already held" in cli.stdout and f"[{job['id']}]" in cli.stdout

        unknown_route = httpx.post(f"{node.http_url}/api/studies/{study_uid}/process",
                                   json={"source": "pacs-dimse", "routes": ["nope"]}, timeout=60)
        assert unknown_route.status_code == 404 and "nope" in unknown_route.json()["detail"]
        missing = httpx.post(f"{node.http_url}/api/studies/1.2.3.999/process", json={"source": "pacs-dimse"},
                             timeout=60)
        assert missing.status_code == 502 and "no study" in missing.json()["detail"]
    finally:
        node.stop()
        orthanc.stop()
