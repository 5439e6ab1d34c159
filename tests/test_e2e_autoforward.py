"""The hospital topology: a modality sends to the PACS only; the PACS forwards to the node.

A real Orthanc runs the shipped forwarding script (orthanc/autoforward.lua); dcmtk storescu
sends a head CT to Orthanc alone. The node's results must appear in the same study in
Orthanc, and nothing may loop: the result series are not forwarded back, and the source
series is processed once.
"""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pydicom
import pytest

from models.phantoms.head_ct import generate_head_ct, write_phantom
from node.states import JobState
from tests.support import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, storescu, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
ROUTES = HEAD_CT_ROUTE


def test_a_series_sent_to_the_pacs_only_gets_its_results_beside_it_without_a_loop(tmp_path: Path):
    dicom_port, http_port = free_port(), free_port()
    orthanc = OrthancServer(tmp_path / "orthanc", node_port=dicom_port, extra_config={
        "LuaScripts": [str(REPO / "orthanc" / "autoforward.lua")], "StableAge": 2,
    }).start()
    node = NodeProcess(tmp_path / "node", node_config(dicom_port, http_port, orthanc, ROUTES, quiet_seconds=1.0))
    node.dicom_port = dicom_port
    node.start(http_port)
    try:
        phantom = generate_head_ct(seed=21, slices=6, hematoma=True)
        files = sorted(p for p in write_phantom(phantom, tmp_path / "series") if p.suffix == ".dcm")
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        study_uid, series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)

        storescu(files, orthanc.dicom_port, called_ae=orthanc.ae_title)  # the modality knows only the PACS

        wait_for(lambda: [j for j in node.jobs() if j["state"] == JobState.DELIVERED], 120,
                 what="the node's job on the forwarded series")
        results = wait_for(lambda: orthanc.results_by_class(study_uid, series_uid), 60, what="results in the study")
        assert results, "results in the same study as their source"
        time.sleep(6)  # past Orthanc's StableAge for the result series: a loop would show now
        jobs = node.jobs()
        assert len(jobs) == 1 and jobs[0]["series_uid"] == series_uid, jobs
        quarantined = httpx.get(f"{node.http_url}/api/quarantine", timeout=10).json()["instances"]
        assert quarantined == [], "Orthanc forwarded the node's own results back"

        # A CT series that the node itself stored in Orthanc (its AE title as the caller) is never
        # forwarded, whatever its modality: that is what keeps results of CT modality from looping.
        echo = generate_head_ct(seed=22, slices=3, hematoma=False)
        echo_files = sorted(p for p in write_phantom(echo, tmp_path / "from-node") if p.suffix == ".dcm")
        storescu(echo_files, orthanc.dicom_port, called_ae=orthanc.ae_title, calling_ae="AINODE")
        wait_for(lambda: "came from the node, not forwarded" in (orthanc.workdir / "orthanc.log").read_text(
            errors="replace"), 30, what="Orthanc's forwarding script to skip the node's own series")
        time.sleep(2)
        assert len(node.jobs()) == 1, "the node's own series came back"
    finally:
        node.stop()
        orthanc.stop()
