"""The outbox: delivers queued result objects, retrying with backoff, one thread per destination."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from ..config import Config, DestinationConfig
from ..logs import log
from ..metrics import Metrics
from ..store import JobStore
from .dimse import send_files

__all__ = ["Outbox", "backoff_delay"]

_logger = logging.getLogger("ainode.egress")


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after ``attempts`` failed tries: ``base * 2**(attempts-1)``, at most ``cap``."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


class Outbox:
    """Delivers every pending result to its destination; a slow or absent one blocks no other."""

    def __init__(self, config: Config, store: JobStore, metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._stop = threading.Event()
        self._wakes = {d.name: threading.Event() for d in config.destinations}
        self._threads = [
            threading.Thread(target=self._run, args=(d,), name=f"outbox-{d.name}", daemon=True)
            for d in config.destinations
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for wake in self._wakes.values():
            wake.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def wake(self) -> None:
        """Tell the outbox new results are queued."""
        for wake in self._wakes.values():
            wake.set()

    def deliver_due(self, destination: DestinationConfig) -> int:
        """Try every result due for ``destination`` now; returns how many were tried."""
        due = [r for r in self._store.due_results(self._clock()) if r.destination == destination.name]
        if not due:
            return 0
        outcome = send_files(
            destination, self._config.node.ae_title, [(r.path, r.sop_class_uid) for r in due],
            timeout=self._config.egress.timeout_seconds,
        )
        for row in due:
            error = outcome.errors.get(row.path, "not sent")
            if error is None:
                self._store.result_delivered(row.id)
                self._metrics.egress_results.labels(destination.name, "delivered").inc()
                continue
            attempts = row.attempts + 1
            egress = self._config.egress
            retry_at = None
            if attempts < egress.max_attempts:
                retry_at = self._clock() + backoff_delay(attempts, egress.backoff_seconds, egress.backoff_max_seconds)
            self._store.result_failed(row.id, error, retry_at)
            self._metrics.egress_results.labels(destination.name, "retry" if retry_at else "dead").inc()
            log(_logger, logging.WARNING, "result not delivered", destination=destination.name,
                sop_instance_uid=row.sop_instance_uid, job_id=row.job_id, attempts=attempts, reason=error,
                next_attempt_in=None if retry_at is None else round(retry_at - self._clock(), 1))
        delivered = sum(1 for r in due if outcome.errors.get(r.path) is None)
        if delivered:
            log(_logger, logging.INFO, "results delivered", destination=destination.name, count=delivered,
                jobs=sorted({r.job_id for r in due}))
        return len(due)

    def _run(self, destination: DestinationConfig) -> None:
        wake = self._wakes[destination.name]
        while not self._stop.is_set():
            wake.clear()
            try:
                self.deliver_due(destination)
            except Exception as exc:
                log(_logger, logging.ERROR, "outbox error", destination=destination.name, reason=repr(exc))
            next_due = self._store.next_result_due()
            delay = 1.0 if next_due is None else min(1.0, max(0.05, next_due - self._clock()))
            wake.wait(timeout=delay)
