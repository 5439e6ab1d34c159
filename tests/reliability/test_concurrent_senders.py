"""8 modalities at once: 8 parallel dcmtk ``storescu`` processes, 8 small head CT series
each. Every series processed, results exactly once; the node's peak RSS (node process +
worker children, sampled from /proc) printed and written to ``peak_rss.json``."""
from __future__ import annotations

import json

import pytest

from benchmarks.faults import report_text, run_concurrent_senders
from tests.reliability import SEED

pytestmark = pytest.mark.e2e


def test_eight_senders_of_eight_series_each(reliability_pacs, tmp_path):
    report = run_concurrent_senders(tmp_path, reliability_pacs, senders=8, series_per_sender=8, slices=2,
                                    seed=SEED, timeout=300)
    text = report_text(report)
    peak = {"peak_rss_bytes": report.peak_rss, "peak_rss_mib": round(report.peak_rss / 2**20, 1),
            "samples": report.rss_samples, "series": report.series, "instances": report.instances,
            "send_seconds": round(report.send_seconds, 2), "seconds": round(report.seconds, 1)}
    (tmp_path / "peak_rss.json").write_text(json.dumps(peak, indent=2))
    print(f"peak RSS of the node and its workers: {peak['peak_rss_mib']} MiB ({tmp_path / 'peak_rss.json'})")
    assert report.rss_samples > 0 and report.peak_rss > 0, text
    assert report.sender_errors == [], text
    assert report.delivered == report.series == 64, text
    assert report.duplicated == 0 and report.missing_results == 0, text
    assert report.problems == [], text
