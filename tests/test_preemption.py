"""Preemption (issue 32): with one worker, a running routine job yields its worker to a stat job at a
safe point, is queued again as it was (not a failure, its run not counted), runs after the stat job,
and is finished exactly once with its results delivered once. The worker's side alone, then a real
node with a real Orthanc as the PACS."""
from __future__ import annotations

import multiprocessing
from dataclasses import replace
from pathlib import Path

import httpx
import pydicom
import pytest

from models.phantoms.head_ct import generate_head_ct, write_phantom
from node.states import JobState
from node.worker import JobSpec, YieldRequests, read_ahead, run_job
from node.worker.yielding import set_yield_requests
from tests.support import HEAD_CT_ROUTE, NodeProcess, free_port, node_config, storescu, wait_for

SR = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
SEG = "1.2.840.10008.5.1.4.1.1.66.4"


def test_a_job_asked_to_yield_stops_before_writing_and_keeps_its_slices_read_ahead(small_head_ct, tmp_path: Path):
    _, files = small_head_ct
    requests = YieldRequests(multiprocessing.get_context("spawn"), 2)
    spec = JobSpec(job_id=7, model="head-ct-hematoma", pack="head-ct-hematoma", weights=None, engine="auto",
                   batch_size=2, instance_paths=tuple(map(str, files)), out_dir=str(tmp_path / "out"))
    set_yield_requests(requests.shared)
    try:
        assert read_ahead(replace(spec, job_id=0)).images == len(files)
        assert requests.ask(7) and requests.ask(9) and not requests.ask(11), "one slot per worker"
        outcome = run_job(spec)
        assert outcome.yielded and not outcome.ok and outcome.stage is None and not outcome.results
        assert not (tmp_path / "out").exists(), "nothing written"
        requests.forget(7)
        outcome = run_job(spec)  # the same job, no longer asked: it runs to its end
        assert outcome.ok and not outcome.yielded and outcome.results
        assert outcome.summary.get("slices_read_ahead") == len(files), "what was read ahead was given back"
    finally:
        set_yield_requests(None)


@pytest.mark.e2e
def test_a_running_routine_job_yields_to_stat_and_is_delivered_once(pacs, small_head_ct, tmp_path: Path):
    routine_files = sorted(p for p in write_phantom(generate_head_ct(seed=31, slices=24, hematoma=True),
                                                    tmp_path / "routine") if p.suffix == ".dcm")
    header = pydicom.dcmread(routine_files[0], stop_before_pixels=True)
    _, stat_files = small_head_ct
    stat_uid = str(pydicom.dcmread(stat_files[0], stop_before_pixels=True).SeriesInstanceUID)
    peers = "".join(f'\n[[peers]]\nae_title = "{t}"\nhost = "127.0.0.1"\nsends_whole_series = true\n'
                    for t in ("MODALITY", "ER_CT"))
    extra = (peers + "\n[runner]\nread_ahead = false\n"  # the routine job runs every slice after completion
             '\n[models.head-ct-hematoma]\npack = "head-ct-hematoma"\nbatch_size = 1\n')  # a safe point every slice
    http_port, dicom_port = free_port(), free_port()
    route = HEAD_CT_ROUTE + 'priority_from = {calling_ae = {ER_CT = "stat"}}\n'
    node = NodeProcess(tmp_path / "node", node_config(dicom_port, http_port, pacs, route, quiet_seconds=30,
                                                      extra=extra))
    node.start(http_port)
    try:
        wait_for(lambda: "models loaded" in node.log_text(), 120, what="the node's models")
        storescu(routine_files, dicom_port, calling_ae="MODALITY")
        routine = wait_for(lambda: next((j for j in node.jobs() if j["state"] == JobState.RUNNING), None), 60, 0.02,
                           what="the routine job running")
        storescu(stat_files, dicom_port, calling_ae="ER_CT")
        wait_for(lambda: all(j["state"] == JobState.DELIVERED for j in node.jobs()) and len(node.jobs()) == 2,
                 180, 0.1, what="both jobs delivered")
        jobs = {j["id"]: httpx.get(f"{node.http_url}/api/jobs/{j['id']}", timeout=10).json() for j in node.jobs()}
        stat = next(j for j in jobs.values() if j["series_uid"] == stat_uid)
        mine = jobs[routine["id"]]
        states = [e["state"] for e in mine["events"]]
        yields = [e for e in mine["events"] if (e["detail"] or "").startswith("yielded:")]
        assert len(yields) == 1 and yields[0]["state"] == JobState.QUEUED, mine["events"]
        assert states.count(JobState.RUNNING) == 2 and states.count(JobState.WRITTEN) == 1, states
        assert states.count(JobState.DELIVERED) == 1 and JobState.FAILED not in states, states
        assert mine["runs"] == 1, "a yield is not a run"
        assert stat["priority"] == "stat" and stat["runs"] == 1

        def delivered(job: dict) -> float:
            return next(e["at"] for e in job["events"] if e["state"] == JobState.DELIVERED)

        assert delivered(stat) < delivered(mine), "the stat job's results first"
        assert yields[0]["at"] < next(e["at"] for e in stat["events"] if e["state"] == JobState.RUNNING) + 1e-3
        # its results are in the PACS once: the objects of its one written run, no copy of an earlier one
        sops = {r["sop_instance_uid"] for r in mine["results"]}
        assert all(r["state"] == "delivered" for r in mine["results"]) and sops
        in_pacs = pacs.results_by_class(str(header.StudyInstanceUID), str(header.SeriesInstanceUID))
        assert {str(ds.SOPInstanceUID) for objs in in_pacs.values() for ds in objs} == sops
        assert len(in_pacs[SR]) == 1 and len(in_pacs[SEG]) == 1, {k: len(v) for k, v in in_pacs.items()}
        assert 'ainode_preemptions_total{route="head-ct"} 1.0' in node.metrics()
    finally:
        node.stop()


def test_a_slice_wise_pack_preprocesses_a_few_slices_at_a_time_to_the_same_arrays(small_head_ct, monkeypatch):
    import numpy as np

    from node.worker import job
    from node.worker.engines import pack_for
    from node.worker.series import load_series

    _, files = small_head_ct
    pack = pack_for("head-ct-hematoma", None)
    series, _ = load_series([str(f) for f in files], pack)
    whole = pack.preprocess(series)
    monkeypatch.setattr(job, "_PREPROCESS_SLICES", 4)  # 6 slices: two parts, a safe point between them
    parts = job._preprocess(pack, series, 0)
    assert whole.keys() == parts.keys() and all(np.array_equal(whole[k], parts[k]) for k in whole)


def test_a_job_asked_while_writing_parks_and_goes_on_without_making_an_object_twice(small_head_ct, tmp_path: Path,
                                                                                   monkeypatch):
    """One worker: a job asked to yield after its first object was handed over keeps the rest of its
    stream in the process, and its next run there goes on with it (the objects sent keep their UIDs)."""
    import queue

    from node.results.aside import InlineAside
    from node.worker import job
    from node.worker.saving import parked, set_handover

    _, files = small_head_ct
    monkeypatch.setattr(job, "check_yield", lambda _job_id: None)  # no safe point before the write: asked, it writes
    monkeypatch.setattr(job, "RESULT_HELPER", InlineAside())
    handed: queue.Queue = queue.Queue()
    requests = YieldRequests(multiprocessing.get_context("spawn"), 1)
    spec = JobSpec(job_id=8, model="head-ct-hematoma", pack="head-ct-hematoma", weights=None, engine="auto",
                   batch_size=2, instance_paths=tuple(map(str, files)), out_dir=str(tmp_path / "out"),
                   series_uid="1.2.3.8", hand_over=True, may_park=True)
    set_handover(handed)
    set_yield_requests(requests.shared)
    try:
        requests.ask(8)
        first = run_job(spec)
        assert first.yielded and first.parked and not first.ok and parked(8) is not None
        assert handed.qsize() == 1, "parked after its first object"
        requests.forget(8)
        second = run_job(spec)
        assert second.ok and not second.yielded and parked(8) is None
        sent = [handed.get_nowait()[1].sop_instance_uid for _ in range(handed.qsize())]
        assert len(sent) == len(set(sent)) == len(second.results) > 2
        assert set(sent) == {r.sop_instance_uid for r in second.results}
        assert len(list((tmp_path / "out").glob("*.dcm"))) == len(sent), "no object made twice"
        assert second.summary, "its findings' summary kept"
    finally:
        set_handover(None)
        set_yield_requests(None)


def test_while_a_stat_series_arrives_one_worker_takes_only_stat_work(tmp_path: Path, monkeypatch):
    """The read-ahead of a stat series: for HOLD_SECONDS after it, a worker is kept for stat work, so that
    a routine job is not claimed between two of its read-ahead batches only to yield again."""
    from node.config import RunnerConfig
    from node.metrics import Metrics
    from node.pipeline import preempt
    from node.store import JobStore

    store = JobStore(tmp_path / "db.sqlite")
    try:
        on = preempt.Preemption(RunnerConfig(), store, Metrics(), ["head-ct"])
        assert not on.reading("routine") and on.reserve(0) == 0
        assert on.reading("stat") and on.reserve(0) == 1 and on.reserve(2) == 2
        on.step({1: "stat"}, 0)
        assert on.reserve(0) == 0, "a stat job started: the hold ends"
        on.reading("stat")
        later = preempt.time.monotonic() + preempt.HOLD_SECONDS + 0.1
        monkeypatch.setattr(preempt.time, "monotonic", lambda: later)
        assert on.reserve(0) == 0, "the hold ends"
        monkeypatch.undo()
        from node.config import Priority
        from tests.test_priority import _queue
        stat = _queue(store, "1.2.50.1", priority=Priority.STAT)
        store.claim_jobs("test:1:a", 1, 60.0)
        on.step({stat: "stat"}, 0)  # it starts: the series' hold ends
        store.job_written(stat, [("1.2.50.1.100", "1.2.840.10008.5.1.4.1.1.2", "/r/a.dcm")], ["pacs"])
        on.ended(stat, "stat")
        assert on.reserve(0) == 1, "its results are being delivered"
        store.result_delivered(store.job_results(stat)[0].id)
        assert on.reserve(0) == 0, "delivered: routine work goes on"
        off = preempt.Preemption(RunnerConfig(preempt_for_stat=False), store, Metrics(), ["head-ct"])
        assert off.reading("stat") and off.reserve(0) == 0
    finally:
        store.close()
