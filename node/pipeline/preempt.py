"""Preemption for stat work: a stat job does not wait for routine work already running.

With ``[runner] preempt_for_stat`` (the default), when a stat job waits and no worker is
free (or the read-ahead of a stat series still arriving waits behind routine work), the
runner asks the worker running the least pressing job (routine before urgent; of those,
the one that started last: the least work lost) to yield at its next safe point
(see :mod:`node.worker.yielding`). The job stops before its next step or between two
inference batches, with nothing written, and is queued again as it was: not a failure, its
run not counted, its round-robin turn kept (:meth:`JobStore.yield_job`). The stat job takes
the worker; the yielded job runs again after it, from its start. A job already writing a
stream of results, with one worker (``may_park``), parks instead: the rest of its stream
waits in the worker process, its queued objects stay queued, only this runner claims it
(for ``lease_seconds``), and its next run goes on from where it stopped. With several
workers a writing job does not yield: its request is withdrawn when it ends, and the stat
job takes that worker then. A stat job is never asked to yield.

Counted in ``ainode_preemptions_total{route}``; the job's history shows a ``queued`` event
whose detail starts with ``yielded:``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from ..config import Priority, RunnerConfig
from ..logs import log
from ..metrics import Metrics
from ..states import JobState
from ..store import JobRow, JobStore
from ..worker import JobOutcome, YieldRequests

__all__ = ["Preemption", "YIELD_REASON"]

_logger = logging.getLogger("ainode.runner")

YIELD_REASON = "gave its worker to a stat job; queued again"

HOLD_SECONDS = 2.0
"""After a stat series' slices were sent to be read ahead, one worker takes only stat work this
long, or until a stat job starts (more of its slices are likely on their way): routine jobs are
not claimed only to yield."""

DELIVERY_HOLD_SECONDS = 10.0
"""After a stat job of this runner is written, one worker takes only stat work until its results
are delivered, or this long (a PACS that is down does not hold routine work back for long)."""


class Preemption:
    """The runner's part of preemption: whom to ask, and the yielded jobs queued again."""

    def __init__(self, runner: RunnerConfig, store: JobStore, metrics: Metrics, routes: list[str]) -> None:
        self.enabled = runner.preempt_for_stat
        self._lease_seconds = runner.lease_seconds
        self._store = store
        self._metrics = metrics
        self._requests: YieldRequests | None = None
        self._asked: set[int] = set()
        self._hold_until = 0.0
        self._delivering: dict[int, float] = {}  # stat jobs written here → until when they hold a worker
        for route in routes:  # at 0 before the first
            metrics.preemptions.labels(route)

    def new_pool(self, context: Any, workers: int) -> Any:
        """Requests for a new pool of ``workers``: what each worker reads (``None`` when disabled)."""
        self._asked.clear()
        self._requests = YieldRequests(context, workers) if self.enabled else None
        return self._requests.shared if self._requests is not None else None

    def step(self, running: Mapping[int, str], free: int, stat_reading: bool = False) -> None:
        """Ask running jobs to yield while stat jobs wait for a worker.

        ``running``: the running jobs' priorities by job id, the latest started last;
        ``free``: workers idle now (after this step's claims); ``stat_reading``: a read-ahead
        of a stat series still arriving waits in the pool (its slices are stat work too).
        """
        if any(priority == Priority.STAT for priority in running.values()):
            self._hold_until = 0.0  # a stat job runs: the series it was kept for is complete
        if self._requests is None or free > 0:
            return
        candidates = [job_id for job_id, priority in running.items()
                      if priority != Priority.STAT and job_id not in self._asked]
        if not candidates:
            return
        waiting = self._store.queued_jobs(Priority.STAT) + int(stat_reading) - len(self._asked)
        ranked = sorted(enumerate(candidates), key=lambda pair: (-Priority(running[pair[1]]).rank, -pair[0]))
        for _, job_id in ranked[:max(0, waiting)]:
            if self._requests.ask(job_id):
                self._asked.add(job_id)
                log(_logger, logging.INFO, "job asked to yield to a stat job", job_id=job_id)

    def reading(self, priority: str) -> bool:
        """A read-ahead of a series of ``priority`` was sent to the pool; whether it is stat work."""
        stat = priority == Priority.STAT
        if stat and self.enabled:
            self._hold_until = time.monotonic() + HOLD_SECONDS
        return stat

    def reserve(self, reserve: int) -> int:
        """The workers kept for stat work now: ``reserve``, or at least one while a stat series arrives
        or the results of a stat job written here are being delivered."""
        now = time.monotonic()
        for job_id, until in list(self._delivering.items()):
            job = self._store.get_job(job_id) if until > now else None
            if job is None or job.state != JobState.WRITTEN:
                del self._delivering[job_id]
        return max(reserve, 1) if now < self._hold_until or self._delivering else reserve

    def ended(self, job_id: int, priority: str | None = None) -> None:
        """Job ``job_id`` (of ``priority``) ended: a request to it is withdrawn; a stat job's results,
        once written, hold a worker for stat work until they are delivered."""
        if priority == Priority.STAT and self.enabled:
            self._delivering[job_id] = time.monotonic() + DELIVERY_HOLD_SECONDS
        if job_id in self._asked:
            self._asked.discard(job_id)
            if self._requests is not None:
                self._requests.forget(job_id)

    def requeue(self, job: JobRow, outcome: JobOutcome, owner: str) -> None:
        """Queue again a job that yielded (``outcome.yielded``), as it was."""
        kept = self._lease_seconds if outcome.parked else 0.0  # parked: for this runner's worker to go on with
        if not self._store.yield_job(job.id, owner, YIELD_REASON + (" (parked while writing)" if kept else ""),
                                     parked_for=kept):
            log(_logger, logging.WARNING, "outcome dropped: the job's lease was lost", job_id=job.id)
            return
        self._metrics.preemptions.labels(job.route).inc()
        log(_logger, logging.INFO, "job yielded to a stat job; queued again", job_id=job.id, model=job.model,
            route=job.route, parked=outcome.parked, seconds=round(outcome.total_seconds, 3),
            stages=sorted(outcome.stage_seconds))
