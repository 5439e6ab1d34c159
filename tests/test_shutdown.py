"""Stopping (issue 35): SIGTERM ends ``ainode serve`` within its bound, leaves no process,
and a restart finishes what was cut, exactly once. Real processes: the node as
``python -m node.cli serve`` (its own session: its process group holds every process
it started), dcmtk's storescu, Orthanc as the PACS."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from benchmarks.services import node_config
from tests.support import HEAD_CT_ROUTE, NodeProcess, OrthancServer, free_port, storescu, wait_for

pytestmark = pytest.mark.e2e

BOUND_SECONDS = 15.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _new_node(workdir: Path, pacs: OrthancServer, grace: float) -> tuple[NodeProcess, int]:
    http_port, dicom_port = free_port(), free_port()
    text = node_config(dicom_port, http_port, pacs, HEAD_CT_ROUTE, quiet_seconds=1.0)
    text = text.replace("[node]\n", f"[node]\nshutdown_grace_seconds = {grace}\n", 1)
    node = NodeProcess(workdir, text)
    node.dicom_port = dicom_port
    return node, http_port


def _terminate(node: NodeProcess, *, twice: bool = False) -> float:
    """SIGTERM the node (twice: a second one at once); seconds until it and every process of its group ended."""
    proc = node._proc  # noqa: SLF001 - the test owns it
    assert proc is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if twice:
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=BOUND_SECONDS + 5)
    except Exception:
        node.kill()
        raise AssertionError("the node did not exit after SIGTERM")
    wait_for(lambda: not _group_alive(proc.pid), 5, what="no process of the node left")
    node._proc = None  # noqa: SLF001
    return time.monotonic() - started


def test_idle_node_stops_within_bound_leaving_no_process(pacs, tmp_path):
    node, http_port = _new_node(tmp_path / "node", pacs, grace=10)
    node.start(http_port)
    wait_for(lambda: "models loaded" in node.log_text(), 60, what="models loaded")
    seconds = _terminate(node)
    assert seconds < BOUND_SECONDS, node.log_text()[-3000:]
    assert '"node stopped"' in node.log_text()


def test_sigterm_during_a_job_then_restart_delivers_exactly_once(pacs, small_head_ct, tmp_path):
    _, files = small_head_ct
    node, http_port = _new_node(tmp_path / "node", pacs, grace=0.5)
    node.start(http_port)
    storescu(files, node.dicom_port)
    wait_for(lambda: any(j["state"] == "running" for j in node.jobs()), 60, what="a running job")
    seconds = _terminate(node)
    assert seconds < BOUND_SECONDS, node.log_text()[-3000:]

    node.start(http_port)  # the same data folder: the job is queued again (or was written) and finishes
    try:
        job = wait_for(lambda: next((j for j in node.jobs() if j["state"] == "delivered"), None), 120,
                       what="the job delivered after the restart")
        import pydicom
        source = pydicom.dcmread(files[0], stop_before_pixels=True)
        found = pacs.results_by_class(str(source.StudyInstanceUID), str(source.SeriesInstanceUID))
        uids = [str(ds.SOPInstanceUID) for datasets in found.values() for ds in datasets]
        assert uids and len(uids) == len(set(uids))
        assert all(len(datasets) == 1 for cls, datasets in found.items() if cls != "1.2.840.10008.5.1.4.1.1.7"), \
            {cls: len(d) for cls, d in found.items()}
        assert job["state"] == "delivered"
    finally:
        _terminate(node)


def test_second_sigterm_exits_at_once(pacs, tmp_path):
    node, http_port = _new_node(tmp_path / "node", pacs, grace=30)
    node.start(http_port)
    seconds = _terminate(node, twice=True)
    assert seconds < 5.0
    assert "second stop signal" in node.log_text()
