"""A full disk: the node's data folder on a 48 MB tmpfs with ``[spool] min_free_mb`` /
``min_free_percent`` set. Below the floor a C-STORE is answered 0xA700 (Out of
Resources) before the disk fills; nothing half-written is left; the store passes
``PRAGMA integrity_check``; once space is freed a new series is processed and delivered."""
from __future__ import annotations

import os

import pytest

from benchmarks.faults import report_text, run_disk_full
from tests.reliability import SEED

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs as the node's data folder needs root"),
]


def test_full_disk_refuses_with_out_of_resources_then_recovers(reliability_pacs, tmp_path):
    report = run_disk_full(tmp_path, reliability_pacs, size_mb=48, min_free_mb=16, min_free_percent=10, seed=SEED)
    text = report_text(report)
    print(text)
    assert report.refused_at is not None, f"no C-STORE was answered 0xA700:\n{text}"
    assert report.refused_at > 0, f"refused before the floor was reached:\n{text}"
    # one instance is ~0.5 MiB: the first refusal must come before free space sinks a MiB under the floor
    assert report.free_mb_at_refusal >= report.floor_mb - 1.0, (
        f"the watermark did not hold: first 0xA700 with {report.free_mb_at_refusal:.1f} MiB free, "
        f"floor {report.floor_mb:.1f} MiB:\n{text}")
    assert report.statuses.get("no reply", 0) == 0, text
    assert report.enospc_log_lines == 0, f"the disk filled up (ENOSPC) before the watermark refused:\n{text}"
    assert report.tmp_leftovers == [], text
    assert report.integrity == "ok", text
    assert report.lost == [], text
    assert report.alive_after and report.probe_failures == [], text
    assert report.delivered_after, text
    assert report.problems == [], text
