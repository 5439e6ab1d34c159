"""The first hour of a new user: README's walkthrough, run as written.

README's "The two commands" has a newcomer make a head CT phantom, send it to the local
Orthanc (not to the node), and find the node's results beside their source in the same
study in Orthanc. This test takes those two command lines from README.md itself, runs
them as subprocesses (only the output folder and Orthanc's port are swapped for this
test's), against a real Orthanc running the shipped forwarding script and a node with the
head CT route, and looks for the source and its results in one study.
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from node.states import JobState
from tests.support import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, node_config, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


def _walkthrough() -> list[list[str]]:
    """The ``ainode`` command lines of the first example in README's "The two commands"."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    for block in blocks:
        lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
        commands = [shlex.split(line) for line in lines if line.startswith(".venv/bin/ainode ")]
        if commands:
            return commands
    raise AssertionError("README's 'The two commands' has no .venv/bin/ainode example")


def _ainode() -> str:
    beside = Path(sys.executable).with_name("ainode")
    found = str(beside) if beside.exists() else shutil.which("ainode")
    if not found:
        raise RuntimeError("the ainode console command is not installed (make venv installs it)")
    return found


def test_readme_walkthrough_puts_results_beside_their_source_in_orthanc(tmp_path: Path):
    commands = _walkthrough()
    assert [c[1:3] for c in commands] == [["phantom", "head-ct"], ["send", "/tmp/head"]], commands
    phantom_cmd, send_cmd = commands
    assert phantom_cmd[2:] == ["head-ct", "--out", "/tmp/head", "--seed", "3", "--hematoma"]
    assert send_cmd[2:] == ["/tmp/head", "--port", "4242", "--aet", "ORTHANC"], "the walkthrough sends to Orthanc"

    dicom_port, http_port = free_port(), free_port()
    orthanc = OrthancServer(tmp_path / "orthanc", node_port=dicom_port, extra_config={
        "LuaScripts": [str(REPO / "orthanc" / "autoforward.lua")], "StableAge": 2,
    }).start()
    node = NodeProcess(tmp_path / "node", node_config(dicom_port, http_port, orthanc, HEAD_CT_ROUTE, quiet_seconds=1.0))
    node.dicom_port = dicom_port
    node.start(http_port)
    try:
        out = tmp_path / "head"
        ours = {"/tmp/head": str(out), "4242": str(orthanc.dicom_port)}
        for command in (phantom_cmd, send_cmd):
            argv = [_ainode(), *(ours.get(arg, arg) for arg in command[1:])]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
            assert result.returncode == 0, f"{shlex.join(argv)} failed:\n{result.stdout}\n{result.stderr}"

        first = pydicom.dcmread(sorted(out.rglob("*.dcm"))[0], stop_before_pixels=True)
        study_uid, series_uid = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        assert first.PatientID == "HEADCT-3"

        wait_for(lambda: [j for j in node.jobs() if j["state"] == JobState.DELIVERED], 180,
                 what="the node's job on the series Orthanc forwarded")

        def all_three() -> dict | None:
            by_class = orthanc.results_by_class(study_uid, series_uid)
            has_sc = any(uid.startswith(SECONDARY_CAPTURE_PREFIX) for uid in by_class)
            return by_class if SEG in by_class and COMPREHENSIVE_3D_SR in by_class and has_sc else None

        results = wait_for(all_three, 60, what="the SEG, the SR and the overlays in the source's study")

        # One study in Orthanc holds the source series and the results, under one patient.
        instances = orthanc.instances_of_study(study_uid)
        series = {inst["SeriesTags"].get("SeriesInstanceUID") for inst in instances}
        assert series_uid in series and len(series) >= 4, series
        assert len(orthanc.get("/studies")) == 1 and len(orthanc.get("/patients")) == 1
        for datasets in results.values():
            for ds in datasets:
                assert ds.StudyInstanceUID == study_uid and ds.PatientID == "HEADCT-3"
        jobs = node.jobs()
        assert len(jobs) == 1 and jobs[0]["series_uid"] == series_uid, jobs
    finally:
        node.stop()
        orthanc.stop()
