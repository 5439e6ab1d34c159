"""What the fault scenarios share: the node started with a checked configuration, its job
API and store read back, head CT phantom series to send, and the check of a series'
results against Orthanc."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import httpx

from benchmarks.fuzz import renew_uids
from benchmarks.services import (
    HEAD_CT_ROUTE,
    NodeProcess,
    OrthancServer,
    free_port,
    node_config,
    orthanc_study_instances,
    wait_for,
)

# HEAD_CT_ROUTE: the one route of every scenario: small head CT phantoms, so inference is fast.

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SUCCESS, OUT_OF_RESOURCES = 0x0000, 0xA700
_SETTLED = ("delivered", "failed")
_QUIET_SECONDS = 2.0


# ----------------------------------------------------------------------------- the node


@dataclass(frozen=True)
class _Destination:
    """What :func:`node_config` needs of a PACS (a proxy in front of Orthanc, say)."""

    dicom_port: int
    ae_title: str


def start_checked_node(workdir: Path, pacs: OrthancServer | _Destination, routes: str = HEAD_CT_ROUTE,
                       **options: Any) -> NodeProcess:
    """Like :func:`benchmarks.services.start_node`, but a configuration the node refuses
    fails at once with the node's own message instead of a 60 s wait for ``/healthz``."""
    http_port, dicom_port = free_port(), free_port()
    node = NodeProcess(workdir, node_config(dicom_port, http_port, pacs, routes, **options))  # type: ignore[arg-type]
    node.dicom_port = dicom_port
    check = subprocess.run([sys.executable, "-m", "node.cli", "check-config", str(node.config_path)],
                           capture_output=True, text=True, timeout=120)
    if check.returncode != 0:
        raise RuntimeError(f"the node refuses its configuration: {(check.stderr or check.stdout).strip()[-500:]}")
    return node.start(http_port)


def _get(node: NodeProcess, path: str, timeout: float = 10) -> Any:
    response = httpx.get(f"{node.http_url}{path}", timeout=timeout)
    response.raise_for_status()
    return response.json()


def _series_jobs(node: NodeProcess, series_uid: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=10)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(response.json().get("jobs") or [])


def _current_job(jobs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The series' job that counts: the newest one not superseded by a re-run."""
    live = [j for j in jobs if j["state"] != "superseded"]
    return max(live or jobs, key=lambda j: j["id"]) if jobs else None


def _wait_job(node: NodeProcess, series_uid: str, states: Sequence[str], timeout: float,
              interval: float = 0.1) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job = _current_job(_series_jobs(node, series_uid))
        return job if job is not None and job["state"] in states else None

    return wait_for(reached, timeout, interval, what=f"the job of series {series_uid} in {tuple(states)}")


def node_instance_uids(data_dir: Path) -> set[str]:
    """SOP Instance UIDs in the node's store (``instances`` table), read-only."""
    db = sqlite3.connect(f"file:{data_dir / 'ainode.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        return {row[0] for row in db.execute("SELECT sop_instance_uid FROM instances")}
    finally:
        db.close()


def _tail(node: NodeProcess, lines: int = 15) -> str:
    try:
        return "\n".join(node.log_text().splitlines()[-lines:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------- series


def _head_ct(seed: int, slices: int, hematoma: bool = True) -> list[Any]:
    from models.phantoms.head_ct import generate_head_ct

    return list(generate_head_ct(seed=seed, slices=slices, hematoma=hematoma).datasets)


def _fresh_series(base: Sequence[Any], slices: int) -> list[Any]:
    series = renew_uids(base[:slices])
    for ds in series:
        ds.ImagesInAcquisition = slices
    return series


def _write_series(datasets: Sequence[Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, ds in enumerate(datasets):
        path = folder / f"{index:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- checks


@dataclass
class ResultCheck:
    """How one series' results in Orthanc compare with what the node's job recorded."""

    series_uid: str
    job_state: str | None = None
    recorded: int = 0        # result objects the job lists for the destination
    in_orthanc: int = 0      # result objects Orthanc holds for the study (outside the source series)
    missing: list[str] = field(default_factory=list)      # recorded, not in Orthanc
    duplicated: list[str] = field(default_factory=list)   # in Orthanc, not recorded (an earlier run's objects)
    problems: list[str] = field(default_factory=list)


def check_results(node: NodeProcess, orthanc: OrthancServer, series_uid: str, study_uid: str, *,
                  slices: int | None = None, destination: str = "pacs") -> ResultCheck:
    """Compare the series' job (state delivered, its results all delivered) with Orthanc's
    copy of the study: the same set of result SOP Instance UIDs, one SEG and one SR, and a
    SEG with one frame per slice when ``slices`` is given."""
    check = ResultCheck(series_uid)
    jobs = _series_jobs(node, series_uid)
    current = _current_job(jobs)
    if len(jobs) != 1:
        check.problems.append(f"series {series_uid}: {len(jobs)} jobs (expected 1): "
                              + ", ".join(f"{j['id']} {j['state']}" for j in jobs))
    if current is None:
        return check
    job = _get(node, f"/api/jobs/{current['id']}")
    check.job_state = job["state"]
    if job["state"] != "delivered":
        check.problems.append(f"job {job['id']} is {job['state']} "
                              f"(stage={job.get('stage')}, reason={job.get('reason')})")
    # a run handed back while it wrote: its objects queued and never sent are superseded (the next
    # run writes them anew); what it sent is taken over by the next run (node.worker.result_uids.SentBefore)
    results = [r for r in job.get("results", []) if r["destination"] == destination
               and not (r["state"] == "superseded" and r["attempts"] == 0)]
    not_delivered = [r for r in results if r["state"] != "delivered"]
    if not_delivered:
        check.problems.append(f"job {job['id']}: {len(not_delivered)} results not delivered: "
                              + ", ".join(f"{r['state']}({r.get('last_error')})" for r in not_delivered[:3]))
    recorded = {r["sop_instance_uid"]: r["sop_class_uid"] for r in results}
    stored = [i for i in orthanc_study_instances(orthanc, study_uid) if i["series_uid"] != series_uid]
    in_orthanc = {i["sop_instance_uid"]: i["sop_class_uid"] for i in stored}
    check.recorded, check.in_orthanc = len(recorded), len(in_orthanc)
    check.missing = sorted(set(recorded) - set(in_orthanc))
    check.duplicated = sorted(set(in_orthanc) - set(recorded))
    if check.missing:
        check.problems.append(f"job {job['id']}: {len(check.missing)} recorded results not in Orthanc")
    if check.duplicated:
        check.problems.append(f"job {job['id']}: {len(check.duplicated)} result objects in Orthanc the job does "
                              f"not list (a second run's results): {check.duplicated[:3]}")
    by_class: dict[str, int] = {}
    for sop_class in in_orthanc.values():
        by_class[sop_class] = by_class.get(sop_class, 0) + 1
    for sop_class, name in ((SEG_STORAGE, "SEG"), (COMPREHENSIVE_3D_SR, "SR")):
        if by_class.get(sop_class, 0) != 1:
            check.problems.append(f"study {study_uid}: {by_class.get(sop_class, 0)} {name} objects in Orthanc "
                                  "(expected 1)")
    if slices is not None and by_class.get(SEG_STORAGE) == 1:
        import io

        import pydicom

        seg_id = next(i["orthanc_id"] for i in stored if i["sop_class_uid"] == SEG_STORAGE)
        seg = pydicom.dcmread(io.BytesIO(orthanc.instance_file(seg_id)), stop_before_pixels=True)
        if int(seg.NumberOfFrames) != slices:
            check.problems.append(f"SEG of series {series_uid} has {seg.NumberOfFrames} frames for {slices} slices "
                                  "(an acknowledged instance is missing from the results)")
    return check
