"""Retraction items in the outbox: delivered results that no longer stand, withdrawn from their destinations.

A rejected or superseded job's delivered results are marked (``retract_cause``, see
:mod:`node.store.retraction_marks`); each destination's outbox turns its marks into one
retraction item per job (``kind = 'retract'``: a row of ``results`` whose object is the
IOCM rejection note referencing them, ``retraction_id`` on each result it withdraws). The
item is claimed, retried and dead-lettered like a delivery; once it reaches its
destination the results it withdraws become ``retracted``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

from ..states import OutboxKind, ResultState, RetractCause
from .dialect import Connection
from .results import ResultQueries, _RESULT_COLUMNS, _result_row
from .rows import ResultObject, ResultRow

__all__ = ["MarkedResult", "RetractionQueries"]


@dataclass(frozen=True)
class MarkedResult:
    """A delivered result marked for retraction, with why and the route of its job."""

    result: ResultRow
    cause: RetractCause
    route: str


class RetractionQueries(ResultQueries):
    """Marked results, retraction items, and what their delivery retracts."""

    def marked_results(self, destination: str, limit: int = 500) -> list[MarkedResult]:
        """Results delivered to ``destination``, marked for retraction, that no retraction item covers yet."""
        rows = self._query(
            f"SELECT {_RESULT_COLUMNS}, retract_cause, (SELECT route FROM jobs WHERE jobs.id = results.job_id)"
            " AS route FROM results WHERE destination=? AND retract_cause IS NOT NULL AND retraction_id IS NULL"
            " AND kind=? AND state || ''=? ORDER BY job_id, id LIMIT ?",  # || '': the partial index results_marked
            (destination, OutboxKind.DELIVER.value, ResultState.DELIVERED.value, limit),
        )
        marked = []
        for r in rows:
            d = dict(r)
            cause, route = RetractCause(d.pop("retract_cause")), d.pop("route")
            marked.append(MarkedResult(_result_row(d), cause, route))
        return marked

    def queue_retraction(
        self, job_id: int, destination: str, note: ResultObject, result_ids: Sequence[int],
    ) -> int | None:
        """Queue the retraction of ``result_ids`` (delivered to ``destination``) as one item; returns its id
        (None: another process queued theirs first)."""
        now = time.time()
        with self._tx() as db:
            db.execute(f"SELECT 1 AS locked FROM jobs WHERE id=?{self._dialect.lock_row}", (job_id,))
            marks = ",".join("?" * len(result_ids))
            if db.execute(f"SELECT 1 AS taken FROM results WHERE retraction_id IS NOT NULL AND id IN ({marks})",
                          tuple(result_ids)).fetchone() is not None:
                return None  # another process sharing the store queued their retraction first
            item = int(db.execute(
                "INSERT INTO results(job_id, sop_instance_uid, sop_class_uid, path, destination, state,"
                " next_attempt_at, updated_at, kind) VALUES (?,?,?,?,?,?,?,?,?) RETURNING id",
                (job_id, note.sop_instance_uid, note.sop_class_uid, note.path, destination,
                 ResultState.PENDING.value, now, now, OutboxKind.RETRACT.value),
            ).fetchone()["id"])
            db.executemany("UPDATE results SET retraction_id=? WHERE id=? AND retraction_id IS NULL",
                           [(item, rid) for rid in result_ids])
            self._event(db, "result", item, ResultState.PENDING,
                        f"retraction of {len(result_ids)} results from {destination}")
            self._notify(db, "results")
        return item

    def keep_marked(self, result_ids: Sequence[int], detail: str) -> None:
        """Clear the marks of ``result_ids``: they stay where they are (``retract_superseded = false``)."""
        now = time.time()
        with self._tx() as db:
            db.executemany("UPDATE results SET retract_cause=NULL, updated_at=? WHERE id=?",
                           [(now, rid) for rid in result_ids])
            for rid in result_ids:
                self._event(db, "result", rid, ResultState.DELIVERED, detail)

    def _retracted(self, db: Connection, result_id: int) -> None:
        row = db.execute("SELECT job_id, kind, destination FROM results WHERE id=?", (result_id,)).fetchone()
        if OutboxKind(row["kind"]) is not OutboxKind.RETRACT:
            return
        covered = [r["id"] for r in db.execute("SELECT id FROM results WHERE retraction_id=? AND state=?",
                                               (result_id, ResultState.DELIVERED.value))]
        for rid in covered:
            self._move_result(db, rid, ResultState.RETRACTED)
            self._event(db, "result", rid, ResultState.RETRACTED, f"retraction {result_id}")
        self._event(db, "job", row["job_id"], ResultState.RETRACTED,
                    f"{len(covered)} results retracted from {row['destination']}")
