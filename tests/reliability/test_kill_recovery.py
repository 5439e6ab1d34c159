"""SIGKILL of the node (and its worker processes) at seeded random moments: mid-ingest,
during inference, during delivery. After each restart every acknowledged instance must be
in the store, and in the end every series' results must be in Orthanc exactly as its job
recorded them: none missing, none from a second run of the job."""
from __future__ import annotations

import pytest

from benchmarks.faults import run_kill_trials, report_text
from tests.reliability import SEED

pytestmark = pytest.mark.e2e

TRIALS = 10


def test_sigkill_at_random_moments_loses_nothing_and_delivers_results_once(reliability_pacs, tmp_path):
    report = run_kill_trials(tmp_path, reliability_pacs, trials=TRIALS, seed=SEED, slices=(3, 4), deadline_s=240)
    text = report_text(report)
    print(text)
    assert report.trials == TRIALS, text
    assert set(report.phases) == {"ingest", "inference", "delivery"}, f"the seed draws every phase: {report.phases}"
    assert report.acknowledged > 0, text
    assert report.crashes == [], text
    assert report.lost == [], f"acknowledged instances missing from the store after a restart:\n{text}"
    assert report.duplicated == 0, f"result objects delivered twice (with different SOP Instance UIDs):\n{text}"
    assert report.missing_results == 0, f"results the job lists that never reached Orthanc:\n{text}"
    assert report.problems == [], text
