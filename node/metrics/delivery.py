"""Latency of a delivered job: its ``delivery`` stage and the whole path of its series.

Called by the outbox after a round of deliveries with the jobs it touched; a job that the
round finished (state ``delivered``) is observed once, even when several destination
threads see it finished.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any, Iterable, Protocol

from ..logs import log
from . import Metrics
from ..states import JobState, Stage

__all__ = ["DeliveryLatency"]

_logger = logging.getLogger("ainode.metrics")
_REMEMBERED = 4096
"""How many observed deliveries are remembered to avoid counting one twice."""


class _Store(Protocol):
    def get_job(self, job_id: int) -> dict[str, Any] | None: ...
    def job_events(self, job_id: int) -> list[dict[str, Any]]: ...
    def get_series(self, series_uid: str) -> Any: ...


class DeliveryLatency:
    """Observes ``ainode_stage_duration_seconds{stage="delivery"}`` and ``ainode_series_latency_seconds``."""

    def __init__(self, store: _Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[int, float], None] = OrderedDict()

    def observe(self, job_ids: Iterable[int]) -> None:
        """Observe every job of ``job_ids`` that is now delivered (never raises)."""
        for job_id in sorted(set(job_ids)):
            try:
                self._observe(job_id)
            except Exception as exc:  # a metric must never stop a delivery
                log(_logger, logging.WARNING, "delivery latency not measured", job_id=job_id,
                    reason=type(exc).__name__)

    def _observe(self, job_id: int) -> None:
        job = self._store.get_job(job_id)
        if job is None or job.state != JobState.DELIVERED:
            return
        delivered_at = float(job.updated_at)
        if not self._first_time((job_id, delivered_at)):
            return
        written = [e["at"] for e in self._store.job_events(job_id) if e["state"] == JobState.WRITTEN]
        if written:
            self._metrics.observe_stage(Stage.DELIVER, job.model, delivered_at - written[-1])
        series = self._store.get_series(job.series_uid)
        if series is not None:
            self._metrics.series_latency_seconds.labels(job.model).observe(
                max(0.0, delivered_at - series.first_received))

    def _first_time(self, key: tuple[int, float]) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
            return True
