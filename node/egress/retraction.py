"""Retraction: withdrawing delivered results that no longer stand, through the outbox.

A job's delivered results no longer stand when a radiologist rejects them
(:mod:`node.http.review`) or when the job is superseded (a late image reopened its series,
or an operator re-ran it); the store marks them in the same transaction
(:mod:`node.store.retraction_marks`). Each destination's outbox thread then
(:meth:`Retractions.plan`) turns its marks into one retraction item per job: an IHE IOCM
rejection note (:func:`node.results.rejection_note.build_rejection_note`, title
``(113001, DCM, "Rejected for Quality Reasons")``) referencing exactly the instances that
destination received, written beside the job's results and queued as an outbox item of
kind ``retract``. The item is claimed, retried with backoff and dead-lettered like a
delivery (:func:`send_items`); what it asks of its destination depends on what the
destination allows:

* ``orthanc`` (REST): the referenced instances are deleted (:meth:`OrthancSender.retract
  <node.egress.orthanc.OrthancSender.retract>`);
* ``dimse`` and ``dicomweb``: the rejection note is stored (C-STORE, STOW-RS), as IOCM
  asks of a system that cannot delete.

Superseded results are retracted only where the job's route says so
(``retract_superseded``, default true); a rejection always retracts.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import pydicom

from ..config import Config, DestinationConfig
from ..logs import log
from ..metrics import Metrics
from ..results.rejection_note import build_rejection_note
from ..states import OutboxKind, ResultState, RetractCause
from ..store import JobStore
from ..store.retractions import MarkedResult
from ..store.reviews import Verdict
from ..store.rows import ResultObject, ResultRow
from ..store.spool import write_durable
from .delivery import DeliveryOutcome, Sender

__all__ = ["Retractions", "referenced_instances", "send_items"]

_logger = logging.getLogger("ainode.egress")

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
"""Key Object Selection Document Storage: the class of every rejection note."""


def referenced_instances(path: str | Path) -> list[str]:
    """The SOP Instance UIDs a rejection note withdraws (its Current Requested Procedure Evidence Sequence)."""
    note = pydicom.dcmread(path, stop_before_pixels=True)
    return [str(sop.ReferencedSOPInstanceUID)
            for study in note.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence
            for sop in series.ReferencedSOPSequence]


def send_items(sender: Sender, rows: Sequence[ResultRow], metrics: Metrics | None = None,
               destination: str = "") -> DeliveryOutcome:
    """Send due outbox items: deliveries with :meth:`Sender.send`, retractions with the sender's
    ``retract`` where it has one (Orthanc: delete), else as objects to store (the note)."""
    errors: dict[str, str | None] = {}
    deliveries = [r.object for r in rows if r.kind is OutboxKind.DELIVER]
    retractions = [r.object for r in rows if r.kind is OutboxKind.RETRACT]
    if deliveries:
        errors.update(sender.send(deliveries).errors)
    if retractions:
        retract = getattr(sender, "retract", None)
        outcome = retract(retractions) if retract is not None else sender.send(retractions)
        errors.update(outcome.errors)
        if metrics is not None:
            for item in retractions:
                ok = outcome.errors.get(item.path, "not sent") is None
                metrics.retractions.labels(destination, ResultState.RETRACTED.value if ok else "error").inc()
    return DeliveryOutcome(errors)


class Retractions:
    """Turns one destination's marked results into retraction items (see the module's docstring)."""

    def __init__(self, config: Config, store: JobStore, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._retract_superseded = {r.name: bool(getattr(r, "retract_superseded", True)) for r in config.routes}

    def plan(self, destination: DestinationConfig) -> int:
        """Queue a retraction item per job with marked results at ``destination``; returns how many."""
        by_job: dict[int, list[MarkedResult]] = defaultdict(list)
        for marked in self._store.marked_results(destination.name):
            by_job[marked.result.job_id].append(marked)
        queued = 0
        for job_id, marked in sorted(by_job.items()):
            ids = [m.result.id for m in marked]
            rejected = any(m.cause is RetractCause.REJECTED for m in marked)
            if not rejected and not self._retract_superseded.get(marked[0].route, True):
                self._store.keep_marked(ids, "superseded, kept: the route's retract_superseded is false")
                self._metrics.retractions.labels(destination.name, "kept").inc(len(ids))
                continue
            try:
                note = self._write_note(job_id, [m.result for m in marked], rejected)
            except Exception as exc:  # a result file gone (retention) or unreadable: said once, mark cleared
                reason = f"{type(exc).__name__}: {exc}"[:300]
                self._store.keep_marked(ids, f"cannot be retracted: {reason}")
                self._metrics.retractions.labels(destination.name, "unbuildable").inc(len(ids))
                log(_logger, logging.WARNING, "results not retracted", destination=destination.name, job_id=job_id,
                    results=len(ids), reason=reason)
                continue
            if self._store.queue_retraction(job_id, destination.name, note, ids) is None:
                Path(note.path).unlink(missing_ok=True)  # another outbox sharing the store was first
                continue
            queued += 1
            log(_logger, logging.INFO, "retraction queued", destination=destination.name, job_id=job_id,
                results=len(ids), cause=RetractCause.REJECTED.value if rejected else RetractCause.SUPERSEDED.value,
                note=note.sop_instance_uid)
        return queued

    def _write_note(self, job_id: int, results: Sequence[ResultRow], rejected: bool) -> ResultObject:
        """The rejection note of ``results``, written durably beside the first of them."""
        headers = [pydicom.dcmread(r.path, stop_before_pixels=True) for r in results]
        note = build_rejection_note(headers, self._description(job_id, rejected))
        path = Path(results[0].path).parent / f"rejection-{note.SOPInstanceUID}.dcm"
        buffer = pydicom.filebase.DicomBytesIO()
        note.save_as(buffer, enforce_file_format=True)
        write_durable(path, buffer.getvalue())
        return ResultObject(str(note.SOPInstanceUID), KOS_SOP_CLASS, str(path), results[0].model)

    def _description(self, job_id: int, rejected: bool) -> str:
        """Why, in words a radiologist reads in the viewer."""
        if not rejected:
            return "Superseded: the AI job was run again (a late image or a re-run); newer results replace these."
        reasons = [r.reason.value for r in self._store.job_reviews(job_id)
                   if r.verdict is Verdict.REJECTED and r.reason is not None]
        return "Rejected by a radiologist" + (f": {reasons[-1]}." if reasons else ".")
