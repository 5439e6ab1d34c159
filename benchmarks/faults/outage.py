"""The PACS down while results are due: down then up (all delivered), or down past
``max_attempts`` (dead-lettered, then delivered by ``POST /api/deadletters/retry``)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.services import NodeProcess, OrthancServer, node_pid, wait_for
from benchmarks.faults.background import RssSampler
from benchmarks.faults.common import (
    _QUIET_SECONDS,
    _SETTLED,
    SUCCESS,
    _fresh_series,
    _get,
    _head_ct,
    _tail,
    _wait_job,
    check_results,
    start_checked_node,
)
from benchmarks.faults.sending import send_datasets


@dataclass
class OutageReport:
    mode: str = ""
    acknowledged: int = 0
    attempts_while_down: int = 0
    dead_lettered: int = 0
    requeued: int | None = None
    failed_job: dict[str, Any] | None = None
    delivered: bool = False
    duplicated: int = 0
    missing_results: int = 0
    problems: list[str] = field(default_factory=list)
    peak_rss: int = 0
    seconds: float = 0.0
    log_tail: str = ""


def run_pacs_outage(workdir: Path, *, dead_letter: bool = False, max_attempts: int = 3, down_seconds: float = 4.0,
                    slices: int = 3, seed: int = 0) -> OutageReport:
    """The PACS (its own Orthanc) stopped before a series is sent.

    ``dead_letter=False``: retries go on (``max_attempts`` 200) while it is down for
    ``down_seconds`` past the second attempt; once it is up, everything is delivered.
    ``dead_letter=True``: with ``max_attempts`` tries the results are dead-lettered and
    the job fails at stage ``deliver``; the PACS comes back; ``POST
    /api/deadletters/retry`` delivers them.
    """
    started = time.monotonic()
    report = OutageReport(mode="dead-letter" if dead_letter else "down-then-up")
    orthanc = OrthancServer(Path(workdir) / "orthanc").start()
    node: NodeProcess | None = None
    try:
        node = start_checked_node(Path(workdir) / "node", orthanc, quiet_seconds=_QUIET_SECONDS,
                                  max_attempts=max_attempts if dead_letter else 200)
        series = _fresh_series(_head_ct(seed, slices), slices)
        uid, study = str(series[0].SeriesInstanceUID), str(series[0].StudyInstanceUID)
        with RssSampler(lambda: node_pid(node)) as rss:
            orthanc.stop()
            statuses = send_datasets(node.dicom_port, series)
            report.acknowledged = sum(1 for c in statuses.values() if c == SUCCESS)
            if report.acknowledged != slices:
                report.problems.append(f"not every instance was acknowledged: {statuses}")
            job = _wait_job(node, uid, ("written", *_SETTLED), 90)
            if dead_letter:
                try:
                    job = _wait_job(node, uid, ("failed", "delivered"), 60)
                except TimeoutError as exc:
                    report.problems.append(str(exc))
                failed = [j for j in _get(node, "/api/jobs?state=failed&limit=1000")["jobs"] if j["id"] == job["id"]]
                report.failed_job = failed[0] if failed else None
                if not failed:
                    report.problems.append(f"job {job['id']} is not listed by /api/jobs?state=failed "
                                           f"(state {job['state']})")
                elif failed[0].get("stage") != "deliver" or not failed[0].get("reason"):
                    report.problems.append(f"dead-lettered job without stage 'deliver' and a reason: {failed[0]}")
                results = _get(node, f"/api/jobs/{job['id']}")["results"]
                report.dead_lettered = sum(1 for r in results if r["state"] == "dead")
                report.attempts_while_down = max((r["attempts"] for r in results), default=0)
                if report.dead_lettered != len(results) or not results:
                    report.problems.append(f"{report.dead_lettered} of {len(results)} results dead-lettered")
                orthanc.start()
                response = httpx.post(f"{node.http_url}/api/deadletters/retry", timeout=10)
                response.raise_for_status()
                report.requeued = int(response.json().get("requeued", 0))
                if report.requeued != len(results):
                    report.problems.append(f"retry requeued {report.requeued} of {len(results)} dead letters")
            else:
                def retried() -> bool:
                    results = _get(node, f"/api/jobs/{job['id']}")["results"]
                    return bool(results) and all(r["attempts"] >= 2 for r in results)

                try:
                    wait_for(retried, 60, what="two delivery attempts while the PACS is down")
                except TimeoutError as exc:
                    report.problems.append(str(exc))
                time.sleep(down_seconds)
                results = _get(node, f"/api/jobs/{job['id']}")["results"]
                report.attempts_while_down = max((r["attempts"] for r in results), default=0)
                if any(r["state"] != "pending" for r in results):
                    report.problems.append("results left the queue while the PACS was down: "
                                           + ", ".join(r["state"] for r in results))
                orthanc.start()
            try:
                _wait_job(node, uid, ("delivered",), 90)
                report.delivered = True
            except TimeoutError as exc:
                report.problems.append(str(exc))
            check = check_results(node, orthanc, uid, study, slices=slices)
            report.duplicated, report.missing_results = len(check.duplicated), len(check.missing)
            report.problems += check.problems
            report.peak_rss = rss.peak
    finally:
        if node is not None:
            report.log_tail = _tail(node)
            node.stop()
        orthanc.stop()
        report.seconds = time.monotonic() - started
    return report
