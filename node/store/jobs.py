"""Jobs: queued, claimed by a worker under a lease, written, delivered or failed; re-run on request.

A claimed job carries ``lease_owner`` and ``lease_until``. The owner renews the lease
while the job runs; when the owner dies (a crash, a kill -9) the lease runs out, or the
restarted node sees the owner is gone, and the job returns to the queue. That is how a
crash and a second worker are both handled.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Mapping, Sequence

from ..config.choices import Priority
from ..states import FailureStage, JobState, OutboxKind, ResultState
from .dialect import Connection, StoreDatabase
from .rows import JobRow, ResultObject
from .retraction_marks import mark_superseded

__all__ = ["JobQueries", "PRIORITY_RANK"]

PRIORITY_RANK = "CASE {0} WHEN 'stat' THEN 0 WHEN 'urgent' THEN 1 ELSE 2 END"
"""SQL: a priority column (``{0}``) as its rank, stat first (:attr:`Priority.rank`)."""

_CLAIM_ORDER = (
    "SELECT j.id FROM jobs j WHERE j.state=:st_queued{only}"
    " AND (j.lease_owner IS NULL OR j.lease_owner=:owner OR j.lease_until<:now) ORDER BY " + PRIORITY_RANK.format("j.priority") + ","
    " ROW_NUMBER() OVER (PARTITION BY j.priority, j.route, j.sender ORDER BY j.id),"
    " COALESCE((SELECT MAX(c.claimed_at) FROM jobs c WHERE c.route=j.route AND c.sender=j.sender), 0),"
    " j.id LIMIT :candidates"
)
"""The queued jobs in claim order: by priority; within one, round robin over (route, sender):
the first queued job of each pair before the second of any, pairs served longest ago
first; then by age (id). A queued job parked in another owner's worker waits for it (or its lease's end)."""


class JobQueries(StoreDatabase):
    """The ``jobs`` table."""

    # -- reading ----------------------------------------------------------------------
    def jobs_in_state(self, *states: JobState) -> list[JobRow]:
        marks = ",".join("?" * len(states))
        rows = self._query(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", [s.value for s in states])
        return [JobRow.from_record(r) for r in rows]

    def jobs_for_series(self, series_uid: str) -> list[JobRow]:
        return [JobRow.from_record(r) for r in self._query("SELECT * FROM jobs WHERE series_uid=? ORDER BY id", (series_uid,))]

    def get_job(self, job_id: int) -> JobRow | None:
        rows = self._query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return JobRow.from_record(rows[0]) if rows else None

    def list_jobs(self, state: JobState | None = None, limit: int = 200) -> list[JobRow]:
        if state:
            rows = self._query("SELECT * FROM jobs WHERE state=? ORDER BY id DESC LIMIT ?", (JobState(state).value, limit))
        else:
            rows = self._query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [JobRow.from_record(r) for r in rows]

    def job_counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self._query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}

    def job_events(self, job_id: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT at, state, detail FROM events WHERE kind='job' AND ref=? ORDER BY id", (str(job_id),))
        return [dict(r) for r in rows]

    def queued_jobs(self, priority: Priority) -> int:
        """How many jobs of ``priority`` wait in the queue."""
        rows = self._query("SELECT COUNT(*) AS n FROM jobs WHERE state=? AND priority=?",
                           (JobState.QUEUED.value, Priority(priority).value))
        return int(rows[0]["n"]) if rows else 0

    # -- claiming ---------------------------------------------------------------------
    def claim_jobs(
        self, owner: str, limit: int, lease_seconds: float, priorities: Sequence[Priority] | None = None,
    ) -> list[JobRow]:
        """Take up to ``limit`` queued jobs under a lease held by ``owner``, in claim order.

        Stat before urgent before routine; within one priority, round robin over the
        (route, calling AE) pairs, so that no sender or route flooding the queue starves
        the others; then oldest first. ``priorities``: only jobs of these (a worker kept
        free for stat work). The candidates are read in order, then each is locked
        (``SKIP LOCKED`` on PostgreSQL: another worker's claim is passed over).
        """
        if limit <= 0:
            return []
        only = ""
        now = time.time()
        args: dict[str, Any] = {"st_queued": JobState.QUEUED.value, "candidates": limit * 4 + 8, "owner": owner,
                                "now": now}
        if priorities is not None:
            names = [f"p{i}" for i in range(len(priorities))] or ["p_none"]
            args.update(zip(names, [Priority(p).value for p in priorities] or [""]))
            only = f" AND j.priority IN ({','.join(':' + n for n in names)})"
        ids: list[int] = []
        with self._tx() as db:
            for row in db.execute(_CLAIM_ORDER.format(only=only), args).fetchall():
                if len(ids) >= limit:
                    break
                if db.execute(f"SELECT id FROM jobs WHERE id=? AND state=?{self._dialect.skip_locked}",
                              (row["id"], JobState.QUEUED.value)).fetchone() is None:
                    continue  # another worker holds or took it
                self._move(db, row["id"], JobState.RUNNING, lease=(owner, now + lease_seconds), runs=1,
                           detail=f"owner={owner}")
                db.execute("UPDATE jobs SET claimed_at=? WHERE id=?", (now + len(ids) * 1e-6, row["id"]))
                ids.append(row["id"])
        return [job for job in (self.get_job(i) for i in ids) if job is not None]

    def series_senders(self, series_uid: str) -> list[str]:
        """The calling AE titles that sent the series' instances (sorted)."""
        rows = self._query("SELECT DISTINCT calling_ae FROM instances WHERE series_uid=? AND calling_ae IS NOT NULL",
                           (series_uid,))
        return sorted(str(r["calling_ae"]).strip() for r in rows)

    def renew_job_leases(self, owner: str, job_ids: Sequence[int], lease_seconds: float) -> None:
        """Extend the leases ``owner`` holds on ``job_ids`` (the jobs are still running)."""
        if not job_ids:
            return
        marks = ",".join("?" * len(job_ids))
        with self._tx() as db:
            db.execute(
                f"UPDATE jobs SET lease_until=? WHERE lease_owner=? AND state=? AND id IN ({marks})",
                (time.time() + lease_seconds, owner, JobState.RUNNING.value, *job_ids),
            )

    def release_job_leases(self, should_release: Callable[[str, float], bool]) -> list[int]:
        """Queue again every running job whose lease ``should_release(owner, lease_until)``.

        Used with "the lease ran out" and "the owner process is gone".
        """
        with self._tx() as db:
            rows = db.execute(  # a job whose row another transaction holds is being finished: skip it
                f"SELECT id, lease_owner, lease_until FROM jobs WHERE state=?{self._dialect.skip_locked}",
                (JobState.RUNNING.value,)).fetchall()
            released = [r["id"] for r in rows if should_release(r["lease_owner"] or "", r["lease_until"] or 0.0)]
            for job_id in released:
                self._move(db, job_id, JobState.QUEUED, reason="worker lost (lease released); queued again")
                self._drop_unsent_results(db, job_id, handed_back=True)
        return released

    def yield_job(self, job_id: int, owner: str, reason: str, *, parked_for: float = 0.0) -> bool:
        """Queue again a running job that gave its worker up to stat work.

        Neither a failure nor a run: ``runs`` and its claim (``claimed_at``, the round robin's
        turn) are taken back, so it resumes before the rest of its route and sender's queue.
        ``parked_for`` > 0: it yielded while writing and goes on in ``owner``'s worker: its
        objects already queued stay queued, and only ``owner`` claims it for that long.
        Returns False (and changes nothing) when ``owner`` no longer holds the job.
        """
        with self._tx() as db:
            if not self._holds(db, job_id, owner):
                return False
            lease = (owner, time.time() + parked_for) if parked_for > 0 else None
            self._move(db, job_id, JobState.QUEUED, reason=reason, runs=-1, detail=f"yielded: {reason}", lease=lease)
            db.execute("UPDATE jobs SET claimed_at=NULL WHERE id=?", (job_id,))
            if lease is None:
                self._drop_unsent_results(db, job_id)  # none: it yielded before its write began
        return True

    # -- finishing --------------------------------------------------------------------
    def fail_job(
        self, job_id: int, stage: FailureStage, reason: str, *, engine: str | None = None, owner: str | None = None,
    ) -> bool:
        """Record a failure at ``stage``; False when ``owner`` no longer holds the job."""
        with self._tx() as db:
            if owner is not None and not self._holds(db, job_id, owner):
                return False
            self._move(db, job_id, JobState.FAILED, stage=stage, reason=reason, engine=engine)
            self._drop_unsent_results(db, job_id)
        return True

    def job_written(
        self, job_id: int, results: Sequence[ResultObject], destinations: Sequence[str],
        engine: str | None = None, timings: Mapping[str, float] | None = None, *, owner: str | None = None,
    ) -> bool:
        """Mark a job written and queue each of its result objects for each destination.

        Returns False (and changes nothing) when ``owner`` no longer holds the job: its
        lease ran out and the job was queued again, so this outcome is stale.
        """
        now = time.time()
        with self._tx() as db:
            if owner is not None and not self._holds(db, job_id, owner):
                return False
            self._queue_results(db, job_id, results, destinations, now)
            self._move(db, job_id, JobState.WRITTEN, engine=engine, detail=f"{len(results)} objects")
            db.execute("UPDATE jobs SET timings=? WHERE id=?", (json.dumps(dict(timings or {})), job_id))
            if not results or not destinations:
                self._move(db, job_id, JobState.DELIVERED, detail="nothing to deliver")
            else:  # every object may have been delivered already (queued one by one while written)
                self._settle_job(db, job_id)
        return True

    def result_written(
        self, job_id: int, result: ResultObject, destinations: Sequence[str], *, owner: str | None = None,
    ) -> bool:
        """Queue one result object of a still running job for each destination.

        The worker writes a job's objects one after another; each is delivered while the
        next is written. :meth:`job_written` later queues them all again (a no-op for
        those already queued). Returns False (and changes nothing) when ``owner`` no
        longer holds the job.
        """
        with self._tx() as db:
            if owner is not None and not self._holds(db, job_id, owner):
                return False
            self._queue_results(db, job_id, [result], destinations, time.time())
        return True

    def _queue_results(
        self, db: Connection, job_id: int, results: Sequence[ResultObject], destinations: Sequence[str],
        now: float,
    ) -> None:
        for sop_uid, sop_class, path, *_ in results:
            for dest in destinations:
                db.execute(
                    "INSERT INTO results(job_id, sop_instance_uid, sop_class_uid, path, destination,"
                    " state, next_attempt_at, updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (job_id, sop_uid, sop_class, path, dest, ResultState.PENDING.value, now, now),
                )
        if results and destinations:
            self._notify(db, "results")

    def _drop_unsent_results(self, db: Connection, job_id: int, *, handed_back: bool = False) -> None:
        """A running job that fails (or is rejected): its objects queued while it was written
        and not being sent right now are superseded (a re-run writes them anew).

        ``handed_back`` (its worker lost): only those no sender ever took. One a sender took
        may have reached its destination (a node killed after the PACS answered, before the
        delivery was recorded): it stays pending, and the job's next run takes its UID over
        (``results_sent``), so the PACS never holds two copies of an object.
        """
        now = time.time()
        unsent, args = (" AND sends=0", ()) if handed_back else (" AND (lease_until IS NULL OR lease_until<?)", (now,))
        db.execute(
            f"UPDATE results SET state=?, updated_at=? WHERE job_id=? AND state=? AND kind=?{unsent}",
            (ResultState.SUPERSEDED.value, now, job_id, ResultState.PENDING.value, OutboxKind.DELIVER.value, *args),
        )  # kind: a retraction still goes out

    def _settle_job(self, db: Connection, job_id: int) -> None:
        """Move a written job to delivered or failed once no result is pending (see ResultQueries)."""
        raise NotImplementedError

    def rerun_job(self, job_id: int, reason: str = "re-run requested") -> bool:
        """Queue a failed or delivered job again; its undelivered results are superseded.

        Returns False when the job is queued, running or being delivered (nothing to do).
        """
        with self._tx() as db:
            row = db.execute(f"SELECT state FROM jobs WHERE id=?{self._dialect.lock_row}", (job_id,)).fetchone()
            if row is None or JobState(row["state"]) not in (JobState.FAILED, JobState.DELIVERED):
                return False
            now = time.time()
            db.execute(
                "UPDATE results SET state=?, lease_owner=NULL, lease_until=NULL, updated_at=?"
                " WHERE job_id=? AND state IN (?,?) AND kind=?",
                (ResultState.SUPERSEDED.value, now, job_id, ResultState.PENDING.value, ResultState.DEAD.value,
                 OutboxKind.DELIVER.value),
            )
            mark_superseded(db, job_id, now)  # what the first run delivered is retracted (route permitting)
            self._move(db, job_id, JobState.QUEUED, reason=reason)
        return True

    def set_job_state(
        self, job_id: int, state: JobState, *, stage: FailureStage | None = None, reason: str | None = None,
        engine: str | None = None,
    ) -> None:
        """Move a job to ``state`` (checked against the allowed transitions)."""
        with self._tx() as db:
            self._move(db, job_id, state, stage=stage, reason=reason, engine=engine)

    def _move(
        self, db: Connection, job_id: int, state: JobState, *, stage: FailureStage | None = None,
        reason: str | None = None, engine: str | None = None, lease: tuple[str, float] | None = None,
        runs: int = 0, detail: str | None = None,
    ) -> None:
        self._transition(db, "jobs", "id", job_id, state)
        owner, until = lease if lease else (None, None)
        db.execute(
            "UPDATE jobs SET state=?, stage=?, reason=?, engine=COALESCE(?, engine), lease_owner=?, lease_until=?,"
            " runs=runs+?, updated_at=? WHERE id=?",
            (state.value, stage.value if stage else None, reason, engine, owner, until, runs, time.time(), job_id),
        )
        if detail is None and (stage or reason):
            detail = f"stage={stage.value if stage else None} reason={reason}"
        self._event(db, "job", job_id, state, detail)

    def _holds(self, db: Connection, job_id: int, owner: str) -> bool:
        """Whether ``owner`` still holds running job ``job_id`` (its row is locked until the transaction ends)."""
        row = db.execute(f"SELECT 1 AS held FROM jobs WHERE id=? AND state=? AND lease_owner=?{self._dialect.lock_row}",
                         (job_id, JobState.RUNNING.value, owner)).fetchone()
        return row is not None

