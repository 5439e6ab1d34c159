"""``ainode bench faults``: the node under faults, with a real Orthanc and dcmtk on loopback.

Each scenario starts its own node (and, where it stops the PACS, its own Orthanc), drives
it, checks the outcome against the node's job API, its SQLite store and Orthanc, and
returns a report; nothing here asserts. The reliability tests (``tests/reliability``) call
the same functions with small counts and assert on the reports; the benchmark runs them
at larger counts and writes a "Faults" table to ``benchmarks/RESULTS.md``.

Scenarios:

- :func:`run_kill_trials`: SIGKILL of the node (and its workers) at seeded random
  moments, mid-ingest, during inference, during delivery; then restart. Every
  acknowledged instance must be in the store, every series' results in Orthanc exactly
  as the job recorded them.
- :func:`run_pacs_outage`: the PACS down while results are due, then up (all
  delivered); or down past ``max_attempts`` (dead-lettered, then delivered by
  ``POST /api/deadletters/retry``).
- :func:`run_disk_full`: the data folder on a small tmpfs; C-STOREs until one is
  refused with 0xA700; no temporary leftovers, the store intact; space freed, a new
  series is processed.
- :func:`run_fuzz`: mutated data sets, broken series and garbage PDUs, with idle TCP
  connections held open; C-ECHO and ``/healthz`` probed throughout.
- :func:`run_concurrent_senders`: K ``storescu`` processes of M series each at once;
  peak RSS of the node and its workers.

Modules: one per scenario (:mod:`.kill`, :mod:`.outage`, :mod:`.disk`, :mod:`.fuzzing`,
:mod:`.senders`); :mod:`.common` (node start, job API, phantom series, result checks),
:mod:`.background` (RSS sampler, prober, slow proxy), :mod:`.sending` (C-STORE, raw
files, garbage PDUs, idle connections); :mod:`.report` (:func:`run_faults` and the
report text).
"""
from __future__ import annotations

from benchmarks.faults.background import Prober, RssSampler, SlowProxy
from benchmarks.faults.common import (  # the constants and ResultCheck: importable from here, as before
    COMPREHENSIVE_3D_SR,
    CT_IMAGE_STORAGE,
    OUT_OF_RESOURCES,
    SEG_STORAGE,
    SUCCESS,
    ResultCheck,
    check_results,
    node_instance_uids,
    start_checked_node,
)
from benchmarks.faults.disk import DiskFullReport, run_disk_full
from benchmarks.faults.fuzzing import FuzzReport, run_fuzz
from benchmarks.faults.kill import KillReport, run_kill_trials
from benchmarks.faults.outage import OutageReport, run_pacs_outage
from benchmarks.faults.report import report_text, reports_json, run_faults
from benchmarks.faults.senders import ConcurrencyReport, run_concurrent_senders
from benchmarks.faults.sending import send_datasets

__all__ = [
    "ConcurrencyReport",
    "DiskFullReport",
    "FuzzReport",
    "KillReport",
    "OutageReport",
    "Prober",
    "RssSampler",
    "SlowProxy",
    "check_results",
    "node_instance_uids",
    "report_text",
    "reports_json",
    "run_concurrent_senders",
    "run_disk_full",
    "run_faults",
    "run_fuzz",
    "run_kill_trials",
    "run_pacs_outage",
    "send_datasets",
    "start_checked_node",
]
