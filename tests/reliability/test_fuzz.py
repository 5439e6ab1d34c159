"""Mutated data sets (from the project's phantoms and from real pydicom-data files),
broken series and garbage PDUs; and 200 idle TCP connections held open. The node must not
crash or hang (C-ECHO with dcmtk ``echoscu`` and ``GET /healthz`` probed every 2 s), every
C-STORE must get a DIMSE status, every failed job must carry a stage and a reason, and a
good series sent afterwards must still get its results into Orthanc."""
from __future__ import annotations

import pytest

from benchmarks.faults import report_text, run_fuzz
from tests.reliability import SEED

pytestmark = pytest.mark.e2e


def _assert_survived(report, text: str) -> None:
    assert report.crashes == [], text
    assert report.outcomes.get("no-context", 0) == 0, (
        f"presentation contexts refused for syntaxes the node says it accepts:\n{text}")
    assert report.probe_failures == [], f"C-ECHO or /healthz went unanswered:\n{text}"
    assert report.no_reply == [], f"C-STOREs without a DIMSE status:\n{text}"
    assert report.failed_without_reason == [], f"failed jobs without a stage and a reason:\n{text}"
    # issue 35: a job that cannot use its input fails at load or preprocess, naming the attribute
    # (name and tag) and what is wrong with it; never a Python exception's text
    assert report.failed_unexplained == [], (
        f"{len(report.failed_unexplained)} of {len(report.failed_jobs)} failed jobs without an attribute and"
        f" its defect at load/preprocess: {report.failed_unexplained}\n{text}")
    assert report.unsettled == [], f"jobs stuck before delivered/failed:\n{text}"
    assert report.good_series_delivered, text
    assert report.problems == [], text


def test_fuzzed_datasets_broken_series_and_garbage_pdus(reliability_pacs, tmp_path):
    report = run_fuzz(tmp_path, reliability_pacs, cases=1700, pdus=300, seed=SEED, idle_connections=0,
                      settle_timeout=150)
    text = report_text(report)
    print(text)
    assert report.dataset_cases + report.pdus >= 2000, text
    assert report.series_cases >= 13, text
    _assert_survived(report, text)


def test_200_idle_connections_do_not_block_the_node(reliability_pacs, tmp_path):
    report = run_fuzz(tmp_path, reliability_pacs, cases=60, pdus=16, seed=SEED + 1, idle_connections=200,
                      settle_timeout=90)
    text = report_text(report)
    print(text)
    assert report.idle_connections == 200, text
    _assert_survived(report, text)
