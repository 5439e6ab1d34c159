"""The PACS down while results are due: retried until it is back; down past
``max_attempts``: dead-lettered (failed at stage ``deliver``), then delivered by
``POST /api/deadletters/retry``. Each test stops and starts its own Orthanc."""
from __future__ import annotations

import pytest

from benchmarks.faults import report_text, run_pacs_outage
from tests.reliability import SEED

pytestmark = pytest.mark.e2e


def test_results_wait_while_the_pacs_is_down_then_are_all_delivered(tmp_path):
    report = run_pacs_outage(tmp_path, dead_letter=False, down_seconds=4.0, seed=SEED)
    text = report_text(report)
    assert report.acknowledged == 3, text
    assert report.attempts_while_down >= 2, text
    assert report.delivered, text
    assert report.duplicated == 0 and report.missing_results == 0, text
    assert report.problems == [], text


def test_pacs_down_past_max_attempts_dead_letters_then_retry_delivers(tmp_path):
    report = run_pacs_outage(tmp_path, dead_letter=True, max_attempts=3, seed=SEED)
    text = report_text(report)
    assert report.failed_job is not None, f"the job is not listed by /api/jobs?state=failed:\n{text}"
    assert report.failed_job["stage"] == "deliver" and report.failed_job["reason"], text
    assert report.attempts_while_down == 3, f"each result tried exactly max_attempts times:\n{text}"
    assert report.dead_lettered > 0 and report.requeued == report.dead_lettered, text
    assert report.delivered, text
    assert report.duplicated == 0 and report.missing_results == 0, text
    assert report.problems == [], text
