"""Fuzzing: mutated data sets, broken series and garbage PDUs, with idle TCP connections
held open; C-ECHO and ``/healthz`` probed throughout; every job must settle."""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import httpx

from benchmarks.fuzz import FuzzCase, PduCase, dataset_cases, garbage_pdus, series_cases
from benchmarks.services import NodeProcess, OrthancServer, node_exit_code, node_pid, wait_for
from benchmarks.faults.background import Prober, RssSampler
from benchmarks.faults.common import (
    _QUIET_SECONDS, _current_job, _fresh_series, _get, _head_ct, _tail, _wait_job, _write_series, check_results,
    start_checked_node,
)
from benchmarks.faults.sending import _IdleConnections, _RawSender, _send_pdu

_TERMINAL = ("delivered", "failed", "superseded")  # a superseded job was replaced by a re-run


@dataclass
class FuzzReport:
    dataset_cases: int = 0
    series_cases: int = 0
    pdus: int = 0
    idle_connections: int = 0
    idle_closed_by_node: int = 0
    families: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)        # "0x0000" -> count
    outcomes: dict[str, int] = field(default_factory=dict)        # status / no-context / no-reply / ...
    no_reply: list[str] = field(default_factory=list)
    pdu_outcomes: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    probe_failures: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)
    failed_without_reason: list[dict[str, Any]] = field(default_factory=list)
    failed_jobs: list[dict[str, Any]] = field(default_factory=list)
    failed_unexplained: list[dict[str, Any]] = field(default_factory=list)
    """Failed jobs whose stage is not load/preprocess or whose reason does not name an
    attribute (name or keyword, and tag) and its defect (see :func:`names_an_attribute`)."""
    unsettled: list[dict[str, Any]] = field(default_factory=list)
    series_outcomes: dict[str, str] = field(default_factory=dict)
    good_series_delivered: bool = False
    problems: list[str] = field(default_factory=list)
    peak_rss: int = 0
    slowest_store_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    log_tail: str = ""


def run_fuzz(workdir: Path, orthanc: OrthancServer, *, cases: int = 2000, pdus: int = 300, seed: int = 0,
             idle_connections: int = 0, probe_interval: float = 2.0, settle_timeout: float = 120.0,
             real: bool = True) -> FuzzReport:
    """Mutated data sets (:func:`benchmarks.fuzz.dataset_cases`), then the broken series
    (:func:`~benchmarks.fuzz.series_cases`), while garbage PDUs go in on other
    connections and ``idle_connections`` sockets sit open; C-ECHO, ``/healthz`` and the
    process are probed every ``probe_interval`` seconds. Then the jobs must settle
    (delivered or failed with a stage and a reason) and a good head CT, sent with
    ``storescu`` while the idle connections are still open, must be delivered."""
    from benchmarks.services import storescu

    started = time.monotonic()
    report = FuzzReport(idle_connections=idle_connections)
    workdir = Path(workdir)
    node = start_checked_node(workdir / "node", orthanc, quiet_seconds=_QUIET_SECONDS)
    series_by_case: dict[str, str] = {}
    try:
        with RssSampler(lambda: node_pid(node)) as rss, Prober(node, interval=probe_interval) as prober, \
                _IdleConnections(node.dicom_port or 0, idle_connections) as idle:
            if idle.failed_to_open:
                report.problems.append(f"{idle.failed_to_open} of {idle_connections} idle connections did not open")
            pdu_thread = threading.Thread(target=_pdu_storm, args=(node.dicom_port, pdus, seed, report), daemon=True)
            pdu_thread.start()
            sender = _RawSender(node.dicom_port or 0, workdir / "sender")
            head = _head_ct(seed, 3)
            broken_series = series_cases(head, seed, real=real)

            def record(case: FuzzCase) -> None:
                outcome, status, detail = sender.send(case)
                report.families[case.family] = report.families.get(case.family, 0) + 1
                report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
                if status is not None:
                    key = f"0x{status:04X}"
                    report.statuses[key] = report.statuses.get(key, 0) + 1
                if outcome in ("no-reply", "no-association"):
                    report.no_reply.append(f"{case.name}: {detail}")
                    if node_exit_code(node) is not None:
                        raise RuntimeError(f"the node exited (status {node_exit_code(node)}) after {case.name}")

            try:
                for case in dataset_cases(cases, seed, real=real):
                    record(case)
                    report.dataset_cases += 1
                for broken in broken_series:
                    for case in broken.cases:
                        record(case)
                    series_by_case[broken.name] = broken.series_uid
                    report.series_cases += 1
            except RuntimeError as exc:
                report.crashes.append(str(exc))
            finally:
                sender.close()
                report.slowest_store_seconds = round(sender.slowest, 2)
                report.phase_seconds["send"] = round(time.monotonic() - started, 1)
                pdu_thread.join(600)
                report.phase_seconds["pdus"] = round(time.monotonic() - started, 1)
            if node_exit_code(node) is None:
                time.sleep(_QUIET_SECONDS + 1.0)  # every series sent is complete by now
                _settle(node, report, settle_timeout, list(series_by_case.values()))
                report.phase_seconds["settled"] = round(time.monotonic() - started, 1)
                for name, uid in series_by_case.items():
                    report.series_outcomes[name] = _series_outcome(node, uid)
                good = _fresh_series(_head_ct(seed + 7, 3), 3)
                files = _write_series(good, workdir / "good")
                try:
                    storescu(files, node.dicom_port or 0)
                    _wait_job(node, str(good[0].SeriesInstanceUID), ("delivered",), 120)
                    check = check_results(node, orthanc, str(good[0].SeriesInstanceUID),
                                          str(good[0].StudyInstanceUID), slices=3)
                    report.problems += check.problems
                    report.good_series_delivered = not check.problems
                except Exception as exc:
                    report.problems.append(f"good series after the fuzz: {exc}")
                report.phase_seconds["good series"] = round(time.monotonic() - started, 1)
            report.idle_closed_by_node = idle.closed_by_peer()
            prober.probe()
        report.probes = prober.probes
        report.probe_failures = prober.failures
        if prober.exited is not None:
            report.crashes.append(f"the node exited with status {prober.exited}")
        report.peak_rss = rss.peak
    finally:
        report.log_tail = _tail(node)
        node.stop()
        report.seconds = time.monotonic() - started
    return report


def _pdu_storm(port: int | None, count: int, seed: int, report: FuzzReport, workers: int = 4) -> None:
    """Send ``count`` garbage cases, ``workers`` sockets at a time."""
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()

    def one(case: PduCase) -> None:
        outcome = _send_pdu(port or 0, case)
        key = f"{case.family}: {outcome.split(' (')[0]}"
        with lock:
            report.pdu_outcomes[key] = report.pdu_outcomes.get(key, 0) + 1
            report.pdus += 1

    with ThreadPoolExecutor(workers, thread_name_prefix="pdu") as pool:
        list(pool.map(one, garbage_pdus(count, seed)))


def _series_outcome(node: NodeProcess, series_uid: str) -> str:
    response = httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=10)
    if response.status_code == 404:
        return "no series (no instance of it was indexed)"
    response.raise_for_status()
    series = response.json()
    job = _current_job(series.get("jobs") or [])
    if job is None:
        return f"series {series.get('state')}, no job"
    return f"{job['state']}" + (f" at {job.get('stage')}: {str(job.get('reason'))[:160]}"
                                if job["state"] == "failed" else "")


def _series_settled(node: NodeProcess, series_uid: str) -> bool:
    response = httpx.get(f"{node.http_url}/api/series/{series_uid}", timeout=10)
    if response.status_code == 404:
        return True
    series = response.json()
    if series.get("state") in ("received", "complete"):
        return False
    job = _current_job(series.get("jobs") or [])
    return job is None or job["state"] in _TERMINAL


def _settle(node: NodeProcess, report: FuzzReport, timeout: float, series: Sequence[str] = ()) -> None:
    """Wait until every job is delivered, failed or superseded and every series in
    ``series`` has its outcome; fill the job counts and the failures."""
    def settled() -> bool:
        jobs = _get(node, "/api/jobs?limit=10000")["jobs"]
        return (all(j["state"] in _TERMINAL for j in jobs) and not _get(node, "/healthz").get("missing")
                and all(_series_settled(node, uid) for uid in series))

    try:
        wait_for(settled, timeout, 1.0, what="every job delivered or failed")
    except TimeoutError as exc:
        report.problems.append(str(exc))
    jobs = _get(node, "/api/jobs?limit=10000")["jobs"]
    for job in jobs:
        report.jobs[job["state"]] = report.jobs.get(job["state"], 0) + 1
    report.unsettled = [{k: j.get(k) for k in ("id", "series_uid", "state", "stage", "reason")}
                        for j in jobs if j["state"] not in _TERMINAL]
    failed = _get(node, "/api/jobs?state=failed&limit=10000")["jobs"]
    report.failed_without_reason = [{k: j.get(k) for k in ("id", "series_uid", "stage", "reason")}
                                    for j in failed if not j.get("stage") or not j.get("reason")]
    report.failed_jobs = [{k: j.get(k) for k in ("id", "series_uid", "stage", "reason")} for j in failed]
    report.failed_unexplained = [job for job in report.failed_jobs
                                 if job.get("stage") not in ("load", "preprocess")
                                 or not names_an_attribute(str(job.get("reason") or ""))]


_TAG = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)")
_EXCEPTION = re.compile(r"\b[A-Z]\w*(?:Error|Exception|Warning)\b|Traceback")


def names_an_attribute(reason: str) -> bool:
    """``reason`` is an operator's sentence about an input attribute: it names the attribute
    (its dictionary name or keyword) with its tag, says something after it, and carries no
    exception class name."""
    from pydicom.datadict import dictionary_description, keyword_for_tag

    if _EXCEPTION.search(reason):
        return False
    for match in _TAG.finditer(reason):
        tag = int(match.group(1) + match.group(2), 16)
        try:
            names = {dictionary_description(tag), keyword_for_tag(tag)}
        except KeyError:
            continue
        before = reason[:match.start()].rstrip()
        after = reason[match.end():].strip()
        if any(name and before.endswith(name) for name in names) and after:
            return True
    return False
