"""Marking delivered results for retraction, inside the transaction that rejects or supersedes their job.

A mark (``results.retract_cause``) says that a delivered result no longer stands; the
outbox of its destination later turns the marks into retraction items
(:mod:`node.egress.retraction`), per the route's ``retract_superseded``. Marking in the
same transaction as the re-run or the reopening keeps the first run's results apart from
those the next run delivers under the same job.
"""
from __future__ import annotations

from ..states import OutboxKind, ResultState, RetractCause
from .dialect import Connection

__all__ = ["mark_for_retraction", "mark_superseded"]


def mark_for_retraction(db: Connection, job_id: int, cause: RetractCause, now: float) -> int:
    """Mark the job's delivered results (and those being sent now) that no mark covers yet; returns how many."""
    return int(db.execute(
        "UPDATE results SET retract_cause=?, updated_at=? WHERE job_id=? AND kind=? AND retract_cause IS NULL"
        " AND (state=? OR (state=? AND lease_until IS NOT NULL))",
        (cause.value, now, job_id, OutboxKind.DELIVER.value, ResultState.DELIVERED.value, ResultState.PENDING.value),
    ).rowcount or 0)


def mark_superseded(db: Connection, job_id: int, now: float) -> int:
    """Mark what a superseded (or re-run) job delivered; returns how many results."""
    return mark_for_retraction(db, job_id, RetractCause.SUPERSEDED, now)
