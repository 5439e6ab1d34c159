"""Disk full: the node's data folder on a small tmpfs; C-STOREs until one is refused with
0xA700; no temporary leftovers, the store intact; space freed, a new series goes through."""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.fuzz import renew_uids
from benchmarks.services import NodeProcess, OrthancServer, node_exit_code, node_pid
from benchmarks.faults.background import Prober, RssSampler
from benchmarks.faults.common import (
    _QUIET_SECONDS,
    OUT_OF_RESOURCES,
    SUCCESS,
    _fresh_series,
    _head_ct,
    _tail,
    _wait_job,
    check_results,
    node_instance_uids,
    start_checked_node,
)
from benchmarks.faults.sending import send_datasets


@dataclass
class DiskFullReport:
    size_mb: int = 0
    min_free_mb: int = 0
    floor_mb: float = 0.0                    # max(min_free_mb, min_free_percent of the file system)
    min_free_seen_mb: float | None = None    # the least free space seen before any refusal
    sent: int = 0
    acknowledged: int = 0
    statuses: dict[str, int] = field(default_factory=dict)   # "0xA700" -> count
    refused_at: int | None = None            # index of the first instance answered 0xA700
    free_mb_at_refusal: float | None = None
    tmp_leftovers: list[str] = field(default_factory=list)
    integrity: str = ""
    enospc_log_lines: int = 0
    alive_after: bool = False
    probe_failures: list[str] = field(default_factory=list)
    after_free_statuses: dict[str, int] = field(default_factory=dict)
    delivered_after: bool = False
    lost: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    peak_rss: int = 0
    seconds: float = 0.0
    log_tail: str = ""


def _free_mb(path: Path) -> float:
    return shutil.disk_usage(path).free / 2**20


def run_disk_full(workdir: Path, orthanc: OrthancServer, *, size_mb: int = 48, min_free_mb: int = 16,
                  min_free_percent: int = 10, headroom_mb: int = 10, max_instances: int = 200,
                  seed: int = 0) -> DiskFullReport:
    """The node's data folder on a ``size_mb`` tmpfs, with ``[spool] min_free_mb`` /
    ``min_free_percent`` set. A filler file leaves ``headroom_mb`` above the floor; a
    series (not routed) is sent one instance at a time until one is refused with 0xA700.
    Then: no ``*.tmp`` left, ``PRAGMA integrity_check`` of the store, the node alive; the
    filler is removed and a head CT sent afterwards must be processed and delivered.

    Needs root (``mount``); raises ``PermissionError`` otherwise.
    """
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    started = time.monotonic()
    report = DiskFullReport(size_mb=size_mb, min_free_mb=min_free_mb,
                            floor_mb=max(float(min_free_mb), size_mb * min_free_percent / 100))
    node_dir = Path(workdir) / "node"
    data_dir = node_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(data_dir)], check=True,
                   capture_output=True, timeout=30)
    node: NodeProcess | None = None
    try:
        extra = f"[spool]\nmin_free_mb = {min_free_mb}\nmin_free_percent = {min_free_percent}\n"
        node = start_checked_node(node_dir, orthanc, quiet_seconds=_QUIET_SECONDS, extra=extra)
        filler = data_dir / "filler.bin"
        fill = int((_free_mb(data_dir) - min_free_mb - headroom_mb) * 2**20)
        if fill > 0:
            with open(filler, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, fill)
        base = _head_ct(seed, 1, hematoma=False)[0]
        with RssSampler(lambda: node_pid(node)) as rss:
            # A series no route takes (Body Part PELVIS), one instance per C-STORE.
            stream = renew_uids([base] * max_instances)
            for index, ds in enumerate(stream):
                ds.BodyPartExamined = "PELVIS"
                ds.InstanceNumber = index + 1
                ds.ImagePositionPatient = [0.0, 0.0, float(index)]
                del ds.ImagesInAcquisition
            acknowledged: set[str] = set()
            for index, ds in enumerate(stream):
                free = _free_mb(data_dir)
                seen = report.min_free_seen_mb
                report.min_free_seen_mb = free if seen is None else min(seen, free)
                statuses = send_datasets(node.dicom_port, [ds])
                code = statuses.get(str(ds.SOPInstanceUID))
                key = "no reply" if code is None else f"0x{code:04X}"
                report.statuses[key] = report.statuses.get(key, 0) + 1
                report.sent += 1
                if code == SUCCESS:
                    acknowledged.add(str(ds.SOPInstanceUID))
                if code == OUT_OF_RESOURCES:
                    report.refused_at, report.free_mb_at_refusal = index, free
                    break
                if code is None and node_exit_code(node) is not None:
                    report.problems.append(f"the node exited (status {node_exit_code(node)}) at instance {index}")
                    break
            report.acknowledged = len(acknowledged)
            if report.refused_at is None:
                report.problems.append(f"no C-STORE was refused with 0xA700 in {report.sent} instances "
                                       f"({_free_mb(data_dir):.1f} MB free at the end): {report.statuses}")
            for extra_try in renew_uids([stream[0]] * 2):
                code = send_datasets(node.dicom_port, [extra_try]).get(str(extra_try.SOPInstanceUID))
                key = "no reply" if code is None else f"0x{code:04X}"
                report.statuses[key] = report.statuses.get(key, 0) + 1
            report.tmp_leftovers = sorted(str(Path(root) / name) for root, _, names in os.walk(data_dir)
                                          for name in names if name.endswith(".tmp"))
            try:
                db = sqlite3.connect(f"file:{data_dir / 'ainode.sqlite'}?mode=ro", uri=True, timeout=30)
                try:
                    report.integrity = "; ".join(str(r[0]) for r in db.execute("PRAGMA integrity_check"))
                finally:
                    db.close()
            except sqlite3.Error as exc:
                report.integrity = f"cannot open: {exc!r}"
            report.lost = sorted(acknowledged - node_instance_uids(data_dir)) if "ok" == report.integrity else []
            prober = Prober(node, interval=3600)
            report.probe_failures = prober.probe()
            report.alive_after = node_exit_code(node) is None
            # Room again: a new series must go through.
            filler.unlink(missing_ok=True)
            good = _fresh_series(_head_ct(seed + 1, 3), 3)
            deadline = time.monotonic() + 20
            pending = list(good)
            while pending and time.monotonic() < deadline:
                statuses = send_datasets(node.dicom_port, pending)
                for code in statuses.values():
                    key = "no reply" if code is None else f"0x{code:04X}"
                    report.after_free_statuses[key] = report.after_free_statuses.get(key, 0) + 1
                pending = [ds for ds in pending if statuses.get(str(ds.SOPInstanceUID)) != SUCCESS]
                if pending:
                    time.sleep(1.0)
            if pending:
                report.problems.append(f"after freeing space, {len(pending)} of {len(good)} instances still refused: "
                                       f"{report.after_free_statuses}")
            else:
                uid, study = str(good[0].SeriesInstanceUID), str(good[0].StudyInstanceUID)
                try:
                    _wait_job(node, uid, ("delivered",), 90)
                    report.delivered_after = True
                except TimeoutError as exc:
                    report.problems.append(str(exc))
                report.problems += check_results(node, orthanc, uid, study, slices=3).problems
            report.peak_rss = rss.peak
        report.enospc_log_lines = sum("No space left" in line or "ENOSPC" in line
                                      for line in node.log_text().splitlines())
    finally:
        if node is not None:
            report.log_tail = _tail(node)
            node.stop()
        for attempt in range(3):
            done = subprocess.run(["umount", str(data_dir)], capture_output=True, timeout=30)
            if done.returncode == 0:
                break
            time.sleep(1)
        else:
            subprocess.run(["umount", "-l", str(data_dir)], capture_output=True, timeout=30)
        report.seconds = time.monotonic() - started
    return report
