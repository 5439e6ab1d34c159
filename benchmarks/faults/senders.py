"""Concurrent senders: K dcmtk ``storescu`` processes of M series each at once; every series
delivered exactly once; the peak RSS of the node and its workers."""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.services import OrthancServer, dcmtk, node_exit_code, node_pid
from benchmarks.faults.background import RssSampler
from benchmarks.faults.common import (
    _QUIET_SECONDS, _SETTLED, _fresh_series, _head_ct, _tail, _wait_job, _write_series, check_results,
    start_checked_node,
)


@dataclass
class ConcurrencyReport:
    senders: int = 0
    series: int = 0
    instances: int = 0
    sender_errors: list[str] = field(default_factory=list)
    delivered: int = 0
    duplicated: int = 0
    missing_results: int = 0
    problems: list[str] = field(default_factory=list)
    peak_rss: int = 0
    rss_samples: int = 0
    send_seconds: float = 0.0
    seconds: float = 0.0
    log_tail: str = ""


def run_concurrent_senders(workdir: Path, orthanc: OrthancServer, *, senders: int = 8, series_per_sender: int = 8,
                           slices: int = 2, seed: int = 0, timeout: float = 300.0) -> ConcurrencyReport:
    """``senders`` dcmtk ``storescu`` processes at once, each with ``series_per_sender``
    head CT series of ``slices`` slices (fresh UIDs each); every series must be delivered
    with its results exactly once; the node's peak RSS (node + workers) is sampled."""
    started = time.monotonic()
    workdir = Path(workdir)
    report = ConcurrencyReport(senders=senders, series=senders * series_per_sender)
    hematoma = _head_ct(seed, slices, hematoma=True)
    clear = _head_ct(seed + 1, slices, hematoma=False)
    plan: list[tuple[int, list[Path], str, str]] = []
    for sender in range(senders):
        for index in range(series_per_sender):
            series = _fresh_series(hematoma if (sender + index) % 2 == 0 else clear, slices)
            files = _write_series(series, workdir / "in" / f"s{sender}" / f"{index}")
            plan.append((sender, files, str(series[0].SeriesInstanceUID), str(series[0].StudyInstanceUID)))
    report.instances = sum(len(files) for _, files, _, _ in plan)
    node = start_checked_node(workdir / "node", orthanc, quiet_seconds=_QUIET_SECONDS)
    try:
        with RssSampler(lambda: node_pid(node), interval=0.1) as rss:
            t0 = time.monotonic()
            procs = []
            for sender in range(senders):
                files = [str(p) for s, fs, _, _ in plan if s == sender for p in fs]
                cmd = [dcmtk("storescu"), "-aet", f"MODALITY{sender}", "-aec", "AINODE", "127.0.0.1", str(node.dicom_port),
                       *files]
                procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for sender, proc in enumerate(procs):
                try:
                    _, err = proc.communicate(timeout=180)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
                    report.sender_errors.append(f"sender {sender}: storescu did not finish in 180 s")
                    continue
                if proc.returncode != 0:
                    report.sender_errors.append(f"sender {sender}: storescu exit {proc.returncode}: {err[-300:]}")
            report.send_seconds = time.monotonic() - t0
            remaining = max(30.0, timeout - (time.monotonic() - started))
            deadline = time.monotonic() + remaining
            for _, _, uid, _ in plan:
                try:
                    _wait_job(node, uid, _SETTLED, max(1.0, deadline - time.monotonic()), interval=0.5)
                except TimeoutError as exc:
                    report.problems.append(str(exc))
            report.peak_rss, report.rss_samples = rss.peak, rss.samples
        for _, files, uid, study in plan:
            check = check_results(node, orthanc, uid, study, slices=len(files))
            report.delivered += check.job_state == "delivered"
            report.duplicated += len(check.duplicated)
            report.missing_results += len(check.missing)
            report.problems += check.problems
        code = node_exit_code(node)
        if code is not None:
            report.problems.append(f"the node exited with status {code}")
    finally:
        report.log_tail = _tail(node)
        node.stop()
        report.seconds = time.monotonic() - started
    return report
