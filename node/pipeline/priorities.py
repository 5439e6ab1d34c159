"""Priorities in the runner: which jobs a free worker may claim, and which series it reads ahead first.

Jobs are claimed in the store's order (stat, urgent, routine; round robin by route and
sender within one; then age). With ``[runner] reserve_for_stat = N`` and several workers,
routine and urgent jobs take at most ``workers - N`` of them: the other N wait for stat
work. A stat job with no worker free makes a running routine job yield
(:mod:`node.pipeline.preempt`, ``[runner] preempt_for_stat``).
"""
from __future__ import annotations

import logging
from typing import Callable, Collection, Sequence

from ..config import Priority
from ..logs import log
from ..metrics import Metrics
from ..states import JobState, Stage
from ..store import JobRow, JobStore, SeriesRow
from .route import Router

__all__ = ["claim_free_workers", "effective_reserve", "may_read_ahead", "observe_queue_wait", "read_ahead_order"]

_logger = logging.getLogger("ainode.runner")


def effective_reserve(workers: int, reserve_for_stat: int) -> int:
    """The workers kept for stat jobs: at most ``workers - 1`` (routine work always has one)."""
    return max(0, min(reserve_for_stat, workers - 1))


def claim_free_workers(
    store: JobStore, owner: str, lease_seconds: float, *, workers: int, reserve: int,
    running: Collection[str],
) -> list[JobRow]:
    """Claim jobs for the free workers; ``running``: the priorities of the jobs running now."""
    free = workers - len(running)
    if free <= 0:
        return []
    not_stat = sum(1 for p in running if p != Priority.STAT)
    general = min(free, max(0, workers - reserve - not_stat))  # any priority, stat first
    claimed = store.claim_jobs(owner, general, lease_seconds) if general else []
    left = free - len(claimed)
    if left > 0 and reserve:
        claimed += store.claim_jobs(owner, left, lease_seconds, priorities=(Priority.STAT,))
    return claimed


def read_ahead_order(router: Router, arriving: Sequence[SeriesRow],
                     senders: Callable[[str], Sequence[str]]) -> list[tuple[SeriesRow, Priority]]:
    """Series still arriving with their priority, the most pressing first (then in arrival
    order): a stat series' slices are read ahead before routine ones. ``senders``: the
    calling AE titles of a series (asked only when a route's priority depends on them)."""
    ask = router.priority_by_sender
    ranked = [(s, router.priority(s.attrs, senders(s.series_uid) if ask else ())) for s in arriving]
    return sorted(ranked, key=lambda pair: pair[1].rank)


def may_read_ahead(priority: Priority, *, free: int, reserve: int) -> bool:
    """Whether ``series`` may be read ahead with ``free`` idle workers: a reserved one, or none (the
    read-ahead then goes next in the pool, and no routine job is claimed behind it), only for stat."""
    return free > reserve or priority == Priority.STAT


def observe_queue_wait(store: JobStore, metrics: Metrics, job: JobRow) -> None:
    """``queue`` stage, labelled with the job's priority: from its latest ``queued`` event to its claim."""
    try:
        queued = [e["at"] for e in store.job_events(job.id) if e["state"] == JobState.QUEUED]
    except Exception as exc:  # a metric must never stop a job
        log(_logger, logging.WARNING, "queue wait not measured", job_id=job.id, reason=type(exc).__name__)
        return
    if queued:
        metrics.observe_stage(Stage.QUEUE, job.model, float(job.updated_at) - queued[-1], job.priority)
