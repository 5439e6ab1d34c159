"""A job handed back after its first objects went out: the next run takes their UIDs over.

A worker stopped or killed while it writes a job hands the job back; the job runs again from
the start. Objects it had already delivered (delivery as written) stay in the PACS; with new
UIDs the next run would put a second SEG beside the first (seen in the kill and SIGTERM fault
tests on a loaded machine). The store says which objects of the job went out and still stand
(``results_sent``), and the next run gives its objects in the same places those UIDs
(``node.worker.result_uids.SentBefore``): one row per object, so nothing is sent twice, and
the SR cites the SEG the PACS holds.
"""
from __future__ import annotations

import queue
import time
from pathlib import Path

import pydicom
import pytest

from node.states import OutboxKind, ResultState
from node.store.reviews import RejectReason, Verdict
from node.store.rows import ResultObject
from node.worker import JobSpec, run_job
from tests.postgres_server import postgres_server  # noqa: F401 - a fixture
from tests.test_store_contract import _routed_job, store  # noqa: F401 - a fixture

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _deliver(store, job_id: int, uid: str, destination: str) -> None:
    (row,) = [r for r in store.job_results(job_id) if r.sop_instance_uid == uid and r.destination == destination]
    store.result_delivered(row.id)


def test_what_a_handed_back_run_sent_stands_and_an_operators_rerun_takes_it_back(store):  # noqa: F811
    job_id = _routed_job(store, "1.2.7.1", destinations=("pacs", "archive"))
    assert [j.id for j in store.claim_jobs("w1", 1, 60)] == [job_id]
    objects = [ResultObject(f"1.2.7.1.9{i}", SEG if i == 0 else SR, f"/r/{i}.dcm") for i in range(3)]
    for obj in objects:
        assert store.result_written(job_id, obj, ["pacs", "archive"], owner="w1")
    _deliver(store, job_id, "1.2.7.1.90", "pacs")
    _deliver(store, job_id, "1.2.7.1.90", "archive")
    _deliver(store, job_id, "1.2.7.1.91", "pacs")  # sent to one destination of two: the other row is superseded

    assert store.release_job_leases(lambda owner, _until: owner == "w1") == [job_id]  # the worker is gone
    assert [o.sop_instance_uid for o in store.results_sent(job_id)] == ["1.2.7.1.90"]
    states = {(r.sop_instance_uid, r.destination): r.state for r in store.job_results(job_id)}
    assert states[("1.2.7.1.91", "archive")] == states[("1.2.7.1.92", "pacs")] == ResultState.SUPERSEDED

    # the next run's SEG under the sent UID: its rows are the sent ones, not queued again
    assert [j.id for j in store.claim_jobs("w2", 1, 60)] == [job_id]
    assert store.result_written(job_id, objects[0], ["pacs", "archive"], owner="w2")
    assert [r.state for r in store.job_results(job_id) if r.sop_instance_uid == "1.2.7.1.90"] == [ResultState.DELIVERED] * 2
    report = ResultObject("1.2.7.1.93", SR, "/r/3.dcm")
    assert store.job_written(job_id, [objects[0], report], ["pacs", "archive"], owner="w2")
    for destination in ("pacs", "archive"):
        _deliver(store, job_id, "1.2.7.1.93", destination)
    assert {o.sop_instance_uid for o in store.results_sent(job_id)} == {"1.2.7.1.90", "1.2.7.1.93"}
    assert store.rerun_job(job_id, "re-run requested by an operator")
    assert store.results_sent(job_id) == [], "what an operator's re-run supersedes is retracted, not taken over"


def test_an_object_a_sender_took_before_the_node_was_killed_is_taken_over_not_superseded(store):  # noqa: F811
    """Killed after the PACS stored the SEG, before the delivery was recorded (CI, the kill fault test: a
    second SEG in Orthanc): the row is pending with its sender gone. The next run must take its UID over."""
    job_id = _routed_job(store, "1.2.7.2")
    assert [j.id for j in store.claim_jobs("w1", 1, 60)] == [job_id]
    taken, untouched = (ResultObject(f"1.2.7.2.9{i}", SEG if i == 0 else SR, f"/r/{i}.dcm") for i in range(2))
    assert store.result_written(job_id, taken, ["pacs"], owner="w1")
    assert [r.sop_instance_uid for r in store.claim_due_results("pacs", "sender-1", time.time(), 30)] == [taken.sop_instance_uid]
    assert store.result_written(job_id, untouched, ["pacs"], owner="w1")
    assert store.release_result_leases(lambda owner, _until: owner == "sender-1") == 1  # the node is gone
    assert store.release_job_leases(lambda owner, _until: owner == "w1") == [job_id]

    states = {r.sop_instance_uid: r.state for r in store.job_results(job_id)}
    assert states == {taken.sop_instance_uid: ResultState.PENDING, untouched.sop_instance_uid: ResultState.SUPERSEDED}
    assert [o.sop_instance_uid for o in store.results_sent(job_id)] == [taken.sop_instance_uid]


def test_a_rejection_still_withdraws_what_a_sender_took_and_did_not_deliver(store):  # noqa: F811
    job_id = _routed_job(store, "1.2.7.3")
    assert [j.id for j in store.claim_jobs("w1", 1, 60)] == [job_id]
    seg = ResultObject("1.2.7.3.90", SEG, "/r/0.dcm")
    assert store.job_written(job_id, [seg], ["pacs"], owner="w1")
    (row,) = store.claim_due_results("pacs", "sender-1", time.time(), 30)
    store.result_failed(row.id, "association refused", time.time() + 60)  # to be tried again later
    assert store.add_review(job_id, Verdict.REJECTED, "a radiologist", RejectReason.MISSED_FINDING) is not None
    assert [r.state for r in store.job_results(job_id) if r.kind is OutboxKind.DELIVER] == [ResultState.SUPERSEDED]


def _run(files: list[Path], out: Path, sent_before: tuple[ResultObject, ...] = ()) -> list[ResultObject]:
    from node.results.aside import InlineAside
    from node.worker import job
    from node.worker.saving import set_handover

    handed: queue.Queue = queue.Queue()
    spec = JobSpec(job_id=11, model="head-ct-hematoma", pack="head-ct-hematoma", weights=None, engine="auto",
                   batch_size=2, instance_paths=tuple(map(str, files)), out_dir=str(out), series_uid="1.2.3.11",
                   hand_over=True, sent_before=sent_before)
    set_handover(handed)
    helper, job.RESULT_HELPER = job.RESULT_HELPER, InlineAside()
    try:
        outcome = run_job(spec)
    finally:
        set_handover(None)
        job.RESULT_HELPER = helper
    assert outcome.ok, outcome.reason
    return list(outcome.results)


def _cited(path: str) -> set[str]:
    return {str(e.value) for e in pydicom.dcmread(path).iterall() if e.keyword == "ReferencedSOPInstanceUID"}


@pytest.mark.parametrize("sent_classes", [(SEG,), (SEG, SR)], ids=["seg-sent", "seg-and-sr-sent"])
def test_a_run_after_a_hand_back_takes_over_the_uids_sent_and_the_sr_cites_them(small_head_ct, tmp_path, sent_classes):
    _, files = small_head_ct
    first = _run(files, tmp_path / "first")
    sent = tuple(o for o in first if o.sop_class_uid in sent_classes)
    assert len(sent) == len(sent_classes)
    second = _run(files, tmp_path / "second", sent)
    by_class = {o.sop_class_uid: o for o in second if o.sop_class_uid in (SEG, SR)}
    first_seg = next(o for o in first if o.sop_class_uid == SEG)
    assert by_class[SEG].sop_instance_uid == first_seg.sop_instance_uid
    assert first_seg.sop_instance_uid in _cited(by_class[SR].path), "the SR cites the SEG the PACS holds"
    taken = {o.sop_instance_uid for o in second} & {o.sop_instance_uid for o in first}
    assert taken == {o.sop_instance_uid for o in sent}, "only the objects sent keep their UIDs"
    seg = pydicom.dcmread(by_class[SEG].path)
    assert seg.file_meta.MediaStorageSOPInstanceUID == seg.SOPInstanceUID == first_seg.sop_instance_uid
    assert len(second) == len(first)
