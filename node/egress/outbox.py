"""The outbox: delivers queued result objects, retrying with backoff, one thread per destination."""
from __future__ import annotations

import logging
import os
import time
import urllib.parse
from enum import StrEnum
from functools import partial
from typing import Any, Callable

from ..config import Config, DestinationConfig
from ..logs import audit, log
from ..metrics import Metrics
from ..metrics.delivery import DeliveryLatency
from ..states import OutboxKind, ResultState
from ..store import JobStore, lease_owner_id, owner_is_gone
from ..pipeline.loop import StageLoop
from .delivery import Sender
from .retraction import Retractions, send_items
from .senders import close_sender, release_idle, sender_for

__all__ = ["Outbox", "backoff_delay"]

_logger = logging.getLogger("ainode.egress")

_IDLE_SECONDS = 5.0
"""How long an idle destination thread sleeps when nothing is pending (a safety net: new
results wake it at once, also those another process wrote to a shared store: see
:meth:`node.store.JobStoreContract.watch`)."""


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after ``attempts`` failed tries: ``base * 2**(attempts-1)``, at most ``cap``."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


class Outbox:
    """Delivers every pending result to its destination; a slow or absent one blocks no other.

    Each destination has its :class:`~node.egress.senders.Sender` (chosen by its type);
    retries, backoff and dead letters are the same for every type.
    """

    def __init__(self, config: Config, store: JobStore, metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._store = store
        self._metrics = metrics
        self._latency = DeliveryLatency(store, metrics)
        self._retractions = Retractions(config, store, metrics)
        self._clock = clock
        self._owner = lease_owner_id()
        self._watch: Any = None
        self._senders: dict[str, Sender] = {
            d.name: sender_for(d, calling_ae=config.node.ae_title, timeout=config.egress.timeout_seconds,
                               idle_seconds=config.egress.association_idle_seconds)
            for d in config.destinations
        }
        self._loops = [
            StageLoop(f"outbox-{d.name}", partial(self._step, d), _IDLE_SECONDS, logger=_logger,
                      on_exit=partial(close_sender, self._senders[d.name]))
            for d in config.destinations
        ]

    def start(self) -> None:
        released = self._store.release_result_leases(lambda owner, _until: owner_is_gone(owner))
        if released:
            log(_logger, logging.WARNING, "deliveries of a stopped node due again", results=released)
        if self._loops:  # results a process sharing the store wrote (a worker) wake it at once
            self._watch = self._store.watch({"results": self.wake})
        for loop in self._loops:
            loop.start()

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        for loop, destination in zip(self._loops, self._config.destinations):
            if loop.started:
                loop.stop()  # the loop releases its sender's connections as it ends
            else:  # never started (deliver_due called directly)
                close_sender(self._senders[destination.name])

    def wake(self, state: StrEnum | None = None) -> None:
        """Tell the outbox new results are queued."""
        for loop in self._loops:
            loop.wake()

    def deliver_due(self, destination: DestinationConfig) -> int:
        """Try every result due for ``destination`` now; returns how many were tried."""
        lease = max(60.0, self._config.egress.timeout_seconds * 4)
        due = self._store.claim_due_results(destination.name, self._owner, self._clock(), lease)
        if not due:
            return 0
        outcome = send_items(self._senders[destination.name], due, self._metrics, destination.name)
        for row in due:
            error = outcome.errors.get(row.path, "not sent")
            if error is None:
                self._store.result_delivered(row.id)
                self._metrics.egress_results.labels(destination.name, ResultState.DELIVERED.value).inc()
                continue
            attempts = row.attempts + 1
            egress = self._config.egress
            retry_at = None
            if attempts < egress.max_attempts:
                retry_at = self._clock() + backoff_delay(attempts, egress.backoff_seconds, egress.backoff_max_seconds)
            self._store.result_failed(row.id, error, retry_at)
            outcome_label = "retry" if retry_at else ResultState.DEAD.value
            self._metrics.egress_results.labels(destination.name, outcome_label).inc()
            log(_logger, logging.WARNING, "result not delivered", destination=destination.name,
                sop_instance_uid=row.sop_instance_uid, job_id=row.job_id, attempts=attempts, reason=error,
                next_attempt_in=None if retry_at is None else round(retry_at - self._clock(), 1))
        delivered = sum(1 for r in due if outcome.errors.get(r.path) is None)
        audit("delivery", destination=destination.name, type=destination.type, peer=_peer(destination),
              tls=destination.tls or (destination.url or "").startswith("https:"), objects=len(due),
              delivered=delivered, failed=len(due) - delivered, bytes=sum(_size(r.path) for r in due))
        if delivered:
            self._latency.observe(r.job_id for r in due
                                  if outcome.errors.get(r.path) is None and r.kind is OutboxKind.DELIVER)
            log(_logger, logging.INFO, "results delivered", destination=destination.name, count=delivered,
                jobs=sorted({r.job_id for r in due}))
        return len(due)

    def _step(self, destination: DestinationConfig) -> float:
        """Deliver what is due, then wait until the next result is due (new results wake it at once)."""
        try:  # rejected or superseded results become retraction items, due now; a failure here stops no delivery
            self._retractions.plan(destination)
        except Exception as exc:
            log(_logger, logging.ERROR, "retraction planning error", destination=destination.name, reason=repr(exc))
        try:
            self.deliver_due(destination)
            release_idle(self._senders[destination.name])
        except Exception as exc:
            log(_logger, logging.ERROR, "outbox error", destination=destination.name, reason=repr(exc))
        return self._idle_wait(destination)

    def _idle_wait(self, destination: DestinationConfig) -> float:
        """Until this destination's next result is due (new results wake the thread at once)."""
        try:
            next_due = self._store.next_result_due(destination.name)
        except Exception:
            return _IDLE_SECONDS
        if next_due is None:
            return _IDLE_SECONDS
        return min(_IDLE_SECONDS, max(0.05, next_due - self._clock()))


def _peer(destination: DestinationConfig) -> str:
    """``host:port`` of a destination, for the audit record (a URL's credentials and path left out)."""
    if destination.url:
        parts = urllib.parse.urlsplit(destination.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    return f"{destination.host}:{destination.port}"


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
