"""The indexer: files under its series each stored instance that ingest did not file itself.

Ingest reads each header before it answers and, in the plain case (a new series or one
still being assembled), files the instance in the same transaction that records it
(:meth:`JobStore.add_filed_instance`). What is left here: instances recovered from the
spool or replaced by a new copy, results of this node sent back to it, instances that
arrive after their series was routed or purged, and headers ingest could not read the
routing attributes of; each is read again from its file.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import pydicom

from ..logs import log
from ..metrics import Metrics
from ..states import NO_WAKEUPS, IllegalTransition, JobState, SeriesState, Wakeups
from ..store import InstanceRow, JobStore
from ..dicom.uids import is_valid_uid
from .loop import LoopStage, StageLoop

__all__ = ["Indexer", "ROUTING_KEYWORDS", "routing_attributes"]

_logger = logging.getLogger("ainode.index")

ROUTING_KEYWORDS = (
    "Modality",
    "BodyPartExamined",
    "SOPClassUID",
    "SeriesDescription",
    "StudyDescription",
    "ProtocolName",
    "ImageType",
    "SliceThickness",
    "Rows",
    "Columns",
    "Manufacturer",
    "ImagesInAcquisition",
    "NumberOfFrames",
    "PhotometricInterpretation",
    "RequestedProcedurePriority",  # the sender's urgency: a route's priority_from may raise the priority
    "StudyPriorityID",
)
"""The attributes routes can match on. None of them identifies the patient."""

_MAX_ATTRIBUTE_CHARS = 256


def routing_attributes(ds: pydicom.Dataset) -> dict[str, Any]:
    """The routing attributes of ``ds`` as JSON-friendly values (multi-values joined by ``\\``)."""
    attrs: dict[str, Any] = {}
    for keyword in ROUTING_KEYWORDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if isinstance(value, pydicom.multival.MultiValue):
            attrs[keyword] = "\\".join(str(v) for v in value)[:_MAX_ATTRIBUTE_CHARS]
        elif isinstance(value, (int, float)):
            attrs[keyword] = value
        else:
            attrs[keyword] = str(value)[:_MAX_ATTRIBUTE_CHARS]
    return attrs


class Indexer(LoopStage):
    """A thread that indexes new instances as soon as they are stored (and at start)."""

    def __init__(
        self, store: JobStore, metrics: Metrics, wakeups: Wakeups = NO_WAKEUPS,
        rerun_on_late: Callable[[Mapping[str, Any]], bool] = lambda _attrs: True,
    ) -> None:
        self._store = store
        self._rerun_on_late = rerun_on_late
        self._metrics = metrics
        self._wakeups = wakeups
        self._loop = StageLoop("indexer", self._step, 1.0, logger=_logger)

    def run_once(self) -> int:
        """Index what is waiting; returns how many instances were handled."""
        rows = self._store.unindexed_instances()
        for row in rows:
            self._index(row)
        if rows:
            self._wakeups.produced(SeriesState.RECEIVED)  # filed: a series may be complete, or read ahead
        return len(rows)

    def _step(self) -> float | None:
        """Index a batch; go on at once while there are more."""
        return 0.0 if self.run_once() else None

    def _index(self, row: InstanceRow) -> None:
        """File one instance, or quarantine it: one bad instance never stops the others."""
        if self._store.is_own_result(row.sop_instance_uid):  # a PACS forwarded our result back: no loop
            self._metrics.instances_quarantined.labels("OwnResult").inc()
            self._store.quarantine_instance(row.sop_instance_uid, "a result object of this node, sent back to it")
            log(_logger, logging.INFO, "own result sent back: not processed", sop_instance_uid=row.sop_instance_uid)
            return
        try:
            ds = pydicom.dcmread(row.path, stop_before_pixels=True)
            series_uid = _uid(ds, "SeriesInstanceUID")
            study_uid = _uid(ds, "StudyInstanceUID")
            attrs = routing_attributes(ds)
        except Exception as exc:  # pydicom raises lazily, on access, with many exception types
            reason = f"{type(exc).__name__}: {exc}"[:300]
            self._metrics.instances_quarantined.labels(type(exc).__name__).inc()
            self._store.quarantine_instance(row.sop_instance_uid, reason)
            log(_logger, logging.WARNING, "instance quarantined", sop_instance_uid=row.sop_instance_uid,
                reason=reason)
            return
        try:
            state = self._store.index_instance(row.sop_instance_uid, series_uid, study_uid, attrs, row.received_at)
        except IllegalTransition:  # a node sharing the store filed it first
            return
        if state in (SeriesState.RECEIVED, SeriesState.COMPLETE):
            return  # a complete series not yet routed: its jobs will see this instance
        self._metrics.instances_late.inc()
        superseded: list[int] = []
        if state is SeriesState.ROUTED and self._rerun_on_late(attrs):
            superseded = self._store.reopen_series(series_uid, f"instance {row.sop_instance_uid} arrived late")
        if superseded:
            self._metrics.series_reopened.inc()
            self._wakeups.produced(JobState.SUPERSEDED)  # the outbox retracts what they delivered
        log(_logger, logging.WARNING, "instance arrived after its series was complete",
            sop_instance_uid=row.sop_instance_uid, series_uid=series_uid, series_state=state.value,
            superseded_jobs=superseded)


def _uid(ds: pydicom.Dataset, keyword: str) -> str:
    """A UID attribute of ``ds``, refused unless it is a valid UID (PS3.5 9.1)."""
    value = str(ds[keyword].value) if keyword in ds else ""
    if not is_valid_uid(value):
        raise ValueError(f"{keyword} is not a valid UID")
    return value
