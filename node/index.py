"""The indexer: reads the header of each stored instance and files it under its series."""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pydicom

from .logs import log
from .metrics import Metrics
from .store import InstanceRow, JobStore

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
)
"""The attributes routes can match on. None of them identifies the patient."""


def routing_attributes(ds: pydicom.Dataset) -> dict[str, Any]:
    """The routing attributes of ``ds`` as JSON-friendly values (multi-values joined by ``\\``)."""
    attrs: dict[str, Any] = {}
    for keyword in ROUTING_KEYWORDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if isinstance(value, pydicom.multival.MultiValue):
            attrs[keyword] = "\\".join(str(v) for v in value)
        elif isinstance(value, (int, float)):
            attrs[keyword] = value
        else:
            attrs[keyword] = str(value)
    return attrs


class Indexer:
    """A thread that indexes new instances as soon as they are stored (and at start)."""

    def __init__(self, store: JobStore, metrics: Metrics, on_indexed: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._metrics = metrics
        self._on_indexed = on_indexed
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="indexer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        """Tell the indexer an instance was stored."""
        self._wake.set()

    def run_once(self) -> int:
        """Index what is waiting; returns how many instances were handled."""
        rows = self._store.unindexed_instances()
        for row in rows:
            self._index(row)
        if rows:
            self._on_indexed()
        return len(rows)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if self.run_once():
                    continue
            except Exception as exc:  # the store itself failed: keep trying
                log(_logger, logging.ERROR, "indexer error", reason=repr(exc))
            self._wake.wait(timeout=1.0)

    def _index(self, row: InstanceRow) -> None:
        try:
            ds = pydicom.dcmread(row.path, stop_before_pixels=True)
            series_uid = str(ds.SeriesInstanceUID)
            study_uid = str(ds.StudyInstanceUID)
        except Exception as exc:
            self._metrics.instances_unreadable.inc()
            self._store.mark_index_error(row.sop_instance_uid, repr(exc))
            log(_logger, logging.WARNING, "instance unreadable", sop_instance_uid=row.sop_instance_uid,
                reason=repr(exc))
            return
        state = self._store.index_instance(
            row.sop_instance_uid, series_uid, study_uid, routing_attributes(ds), row.received_at
        )
        if state != "received":
            self._metrics.instances_late.inc()
            log(_logger, logging.WARNING, "instance arrived after its series was complete",
                sop_instance_uid=row.sop_instance_uid, series_uid=series_uid, series_state=state)
