"""Results: one row per object and destination, claimed for delivery under a lease."""
from __future__ import annotations

import time
from typing import Any, Callable

from ..states import FailureStage, JobState, OutboxKind, ResultState
from .dialect import Connection
from .jobs import PRIORITY_RANK, JobQueries
from .rows import ResultObject, ResultRow

__all__ = ["ResultQueries"]

_RESULT_COLUMNS = (
    "id, job_id, sop_instance_uid, sop_class_uid, path, destination, state, attempts, next_attempt_at, last_error,"
    " (SELECT model FROM jobs WHERE jobs.id = results.job_id) AS model, kind"
)

_JOB_RANK = "COALESCE((SELECT " + PRIORITY_RANK.format("jobs.priority") + " FROM jobs WHERE jobs.id = results.job_id), 2)"
"""The priority rank of a result's job: the outbox delivers stat results first (issue 32)."""


class ResultQueries(JobQueries):
    """The ``results`` table; a job is settled when its last result is delivered or dead."""

    def claim_due_results(
        self, destination: str, owner: str, now: float, lease_seconds: float, limit: int = 200,
    ) -> list[ResultRow]:
        """Take the results due for ``destination`` that no live lease holds: of stat jobs first, then oldest first."""
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_RESULT_COLUMNS} FROM results WHERE destination=? AND state=? AND next_attempt_at<=?"
                f" AND (lease_until IS NULL OR lease_until<?) ORDER BY {_JOB_RANK}, id LIMIT ?"
                f"{self._dialect.skip_locked}",
                (destination, ResultState.PENDING.value, now, now, limit),
            ).fetchall()
            db.executemany("UPDATE results SET lease_owner=?, lease_until=?, sends=sends+1 WHERE id=?",
                           [(owner, now + lease_seconds, r["id"]) for r in rows])
        return [_result_row(r) for r in rows]

    def due_results(self, now: float, destination: str | None = None, limit: int = 200) -> list[ResultRow]:
        """Pending results due by ``now`` (for one destination, or all), without claiming them."""
        where, args = ("", ()) if destination is None else (" AND destination=?", (destination,))
        rows = self._query(
            f"SELECT {_RESULT_COLUMNS} FROM results WHERE state=? AND next_attempt_at<=?{where} ORDER BY id LIMIT ?",
            (ResultState.PENDING.value, now, *args, limit),
        )
        return [_result_row(r) for r in rows]

    def next_result_due(self, destination: str | None = None) -> float | None:
        """When the next pending result (of ``destination``, or any) is due; None when none is pending."""
        where, args = ("", ()) if destination is None else (" AND destination=?", (destination,))
        rows = self._query(
            "SELECT MIN(CASE WHEN lease_until > next_attempt_at THEN lease_until ELSE next_attempt_at END) AS t"
            " FROM results WHERE state=?" + where,
            (ResultState.PENDING.value, *args),
        )
        return rows[0]["t"] if rows and rows[0]["t"] is not None else None

    def is_own_result(self, sop_instance_uid: str) -> bool:
        """Whether this SOP Instance UID is a result object the node made (sent back to it)."""
        return bool(self._query("SELECT 1 FROM results WHERE sop_instance_uid=? LIMIT 1", (sop_instance_uid,)))

    def job_results(self, job_id: int) -> list[ResultRow]:
        rows = self._query(f"SELECT {_RESULT_COLUMNS} FROM results WHERE job_id=? ORDER BY id", (job_id,))
        return [_result_row(r) for r in rows]

    def results_sent(self, job_id: int) -> list[ResultObject]:
        """The job's objects that went out, or are going out, and still stand: every row of the
        object delivered or pending (an interrupted run's object that its hand-back did not
        supersede, being sent at that moment), none marked for retraction. A new run of the job
        gives its objects in the same places these UIDs (:class:`node.worker.result_uids.SentBefore`)."""
        rows = self._query(
            "SELECT sop_instance_uid, sop_class_uid, path FROM results WHERE job_id=? AND kind=?"
            " GROUP BY sop_instance_uid, sop_class_uid, path"
            " HAVING SUM(CASE WHEN retract_cause IS NULL AND state IN (?,?) THEN 0 ELSE 1 END)=0",
            (job_id, OutboxKind.DELIVER.value, ResultState.DELIVERED.value, ResultState.PENDING.value))
        return [ResultObject(r["sop_instance_uid"], r["sop_class_uid"], r["path"]) for r in rows]

    def result_counts(self) -> dict[str, int]:
        """Results by state."""
        return {r["state"]: r["n"] for r in self._query("SELECT state, COUNT(*) AS n FROM results GROUP BY state")}

    def result_delivered(self, result_id: int) -> None:
        with self._tx() as db:
            job_id = self._lock_job_of(db, result_id)
            self._move_result(db, result_id, ResultState.DELIVERED)
            db.execute("UPDATE results SET attempts=attempts+1, last_error=NULL WHERE id=?", (result_id,))
            self._retracted(db, result_id)
            self._settle_job(db, job_id)

    def result_failed(self, result_id: int, error: str, retry_at: float | None) -> None:
        """Record a failed attempt; ``retry_at=None`` moves the result to the dead letters."""
        state = ResultState.PENDING if retry_at is not None else ResultState.DEAD
        with self._tx() as db:
            job_id = self._lock_job_of(db, result_id)
            self._move_result(db, result_id, state)
            db.execute("UPDATE results SET attempts=attempts+1, last_error=?, next_attempt_at=? WHERE id=?",
                       (error, retry_at if retry_at is not None else 0.0, result_id))
            if state is ResultState.DEAD:
                self._event(db, "result", result_id, ResultState.DEAD, error)
                self._settle_job(db, job_id)

    def requeue_dead(self, job_id: int | None = None) -> int:
        """Put dead-lettered results back in the queue (all, or one job's). Returns how many."""
        now = time.time()
        with self._tx() as db:
            where, args = ("state=?", (ResultState.DEAD.value,))
            if job_id is not None:
                where, args = where + " AND job_id=?", (*args, job_id)
            jobs = [r["job_id"] for r in db.execute(f"SELECT DISTINCT job_id FROM results WHERE {where}", args)]
            for jid in sorted(jobs):  # jobs before their results, as every writer locks them
                db.execute(f"SELECT 1 AS locked FROM jobs WHERE id=?{self._dialect.lock_row}", (jid,))
            cur = db.execute(
                f"UPDATE results SET state=?, attempts=0, next_attempt_at=?, lease_owner=NULL, lease_until=NULL,"
                f" updated_at=? WHERE {where}",
                (ResultState.PENDING.value, now, now, *args),
            )
            for jid in jobs:
                if JobState(db.execute("SELECT state FROM jobs WHERE id=?", (jid,)).fetchone()["state"]) is JobState.FAILED:
                    self._move(db, jid, JobState.WRITTEN, detail="dead letters requeued")
            return cur.rowcount

    def release_result_leases(self, should_release: Callable[[str, float], bool]) -> int:
        """Drop delivery leases whose owner is gone; the results are due again at once."""
        with self._tx() as db:
            rows = db.execute("SELECT id, lease_owner, lease_until FROM results WHERE state=? AND lease_owner IS NOT NULL"
                              f"{self._dialect.skip_locked}", (ResultState.PENDING.value,)).fetchall()
            ids = [(r["id"],) for r in rows if should_release(r["lease_owner"], r["lease_until"] or 0.0)]
            db.executemany("UPDATE results SET lease_owner=NULL, lease_until=NULL WHERE id=?", ids)
        return len(ids)

    def _move_result(self, db: Connection, result_id: int, state: ResultState) -> None:
        self._transition(db, "results", "id", result_id, state)
        db.execute("UPDATE results SET state=?, lease_owner=NULL, lease_until=NULL, updated_at=? WHERE id=?",
                   (state.value, time.time(), result_id))

    def _lock_job_of(self, db: Connection, result_id: int) -> int:
        """Lock the job of a result before the result itself (the order every writer follows, so
        two processes never deadlock), so that two of its results settled at once by two
        processes do not both see the other one pending. Returns the job id."""
        job_id = db.execute("SELECT job_id FROM results WHERE id=?", (result_id,)).fetchone()["job_id"]
        db.execute(f"SELECT 1 AS locked FROM jobs WHERE id=?{self._dialect.lock_row}", (job_id,))
        return int(job_id)

    def _retracted(self, db: Connection, result_id: int) -> None:
        """A retraction item reached its destination: the results it withdraws are retracted
        (nothing for a delivery; see :class:`node.store.retractions.RetractionQueries`)."""

    def _settle_job(self, db: Connection, job_id: int) -> None:
        job_state = JobState(db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()["state"])
        if job_state is not JobState.WRITTEN:
            return
        counts = {
            r["state"]: r["n"]
            for r in db.execute("SELECT state, COUNT(*) AS n FROM results WHERE job_id=? GROUP BY state", (job_id,))
        }
        if counts.get(ResultState.PENDING.value):
            return
        if counts.get(ResultState.DEAD.value):
            reason = db.execute(
                "SELECT destination || ': ' || COALESCE(last_error, '') AS r FROM results"
                " WHERE job_id=? AND state=? LIMIT 1",
                (job_id, ResultState.DEAD.value),
            ).fetchone()["r"]
            self._move(db, job_id, JobState.FAILED, stage=FailureStage.DELIVER, reason=reason)
        else:
            self._move(db, job_id, JobState.DELIVERED)


def _result_row(r: Any) -> ResultRow:
    d = dict(r)
    d["state"] = ResultState(d["state"])
    d["kind"] = OutboxKind(d.get("kind") or OutboxKind.DELIVER)
    return ResultRow(**d)
