"""Series: assembled, routed into jobs, purged after retention."""
from __future__ import annotations

import json
import time
from typing import Any, Sequence

from ..states import InstanceState, JobState, OutboxKind, ResultState, SeriesState
from .jobs import JobQueries
from .retraction_marks import mark_superseded
from .rows import SeriesRow

__all__ = ["SeriesQueries"]

# The acknowledged instances of a series count toward its quiet period and block its
# completion until indexed, even when the indexer has not filed them yet.
_SERIES_SELECT = (
    "SELECT s.series_uid, s.study_uid, s.state, s.attrs, s.instance_count, s.first_received, s.generation,"
    " s.last_received, (SELECT MAX(i.received_at) FROM instances i"
    "   WHERE i.series_uid = s.series_uid AND i.state = :st_received) AS last_unindexed,"
    " (SELECT COUNT(*) FROM instances i WHERE i.series_uid = s.series_uid AND i.state = :st_received) AS unindexed"
    " FROM series s"
)


class SeriesQueries(JobQueries):
    """The ``series`` table (and the jobs a reopened series supersedes)."""

    def series_in_state(self, state: SeriesState) -> list[SeriesRow]:
        rows = self._query(f"{_SERIES_SELECT} WHERE s.state = :state ORDER BY s.first_received",
                           {"state": SeriesState(state).value, "st_received": InstanceState.RECEIVED.value})
        return [_series_row(r) for r in rows]

    def get_series(self, series_uid: str) -> SeriesRow | None:
        rows = self._query(f"{_SERIES_SELECT} WHERE s.series_uid = :uid",
                           {"uid": series_uid, "st_received": InstanceState.RECEIVED.value})
        return _series_row(rows[0]) if rows else None

    def series_of_study(self, study_uid: str) -> list[str]:
        """The Series Instance UIDs the node knows in a study."""
        return [r["series_uid"] for r in self._query(
            "SELECT series_uid FROM series WHERE study_uid=? ORDER BY first_received", (study_uid,))]

    def series_counts(self) -> dict[str, int]:
        """Series by state."""
        return {r["state"]: r["n"] for r in self._query("SELECT state, COUNT(*) AS n FROM series GROUP BY state")}

    def set_series_state(self, series_uid: str, state: SeriesState, detail: str | None = None) -> None:
        with self._tx() as db:
            self._transition(db, "series", "series_uid", series_uid, state)
            db.execute("UPDATE series SET state=?, updated_at=? WHERE series_uid=?",
                       (state.value, time.time(), series_uid))
            self._event(db, "series", series_uid, state, detail)

    def route_series(self, series_uid: str, jobs: Sequence[tuple[Any, ...]]) -> list[int]:
        """Mark a complete series routed and queue one job per ``(route, model, destinations[, priority])``.

        With no jobs the series is marked ``ignored``. Returns the new job ids. A job's
        ``sender`` (round robin of the claim) is the calling AE title of the series.
        """
        now = time.time()
        ids: list[int] = []
        state = SeriesState.ROUTED if jobs else SeriesState.IGNORED
        with self._tx() as db:
            self._transition(db, "series", "series_uid", series_uid, state)
            generation = db.execute("SELECT generation FROM series WHERE series_uid=?",
                                    (series_uid,)).fetchone()["generation"]
            db.execute("UPDATE series SET state=?, updated_at=? WHERE series_uid=?", (state.value, now, series_uid))
            self._event(db, "series", series_uid, state, ",".join(j[0] for j in jobs) or "no route matches")
            sender = db.execute("SELECT MIN(calling_ae) AS ae FROM instances WHERE series_uid=?",
                                (series_uid,)).fetchone()["ae"] or ""
            for route, model, dests, *priority in jobs:
                job_id = int(db.execute(
                    "INSERT INTO jobs(series_uid, generation, route, model, destinations, state, created_at,"
                    " updated_at, priority, sender) VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
                    (series_uid, generation, route, model, json.dumps(list(dests)), JobState.QUEUED.value, now, now,
                     str(priority[0]) if priority else "routine", str(sender).strip()),
                ).fetchone()["id"])
                ids.append(job_id)
                older = [r["id"] for r in db.execute(
                    "SELECT id FROM jobs WHERE series_uid=? AND route=? AND state=? ORDER BY id",
                    (series_uid, route, JobState.SUPERSEDED.value))]
                detail = f"route={route} model={model}" + (f" supersedes jobs {older}" if older else "")
                self._event(db, "job", job_id, JobState.QUEUED, detail)
            if ids:
                self._notify(db, "jobs")
        return ids

    def reopen_series(self, series_uid: str, detail: str) -> list[int]:
        """An image arrived after the series' jobs started: assemble it again, as a new generation.

        Every job of the earlier generation is superseded (a running one's outcome will be
        dropped, a written one's undelivered results are not sent); the series completes
        again after its quiet period and gets new jobs that see every image. Returns the
        superseded job ids; nothing changes while every job is still queued (they will
        see the new image anyway) or when the series is not routed.
        """
        now = time.time()
        with self._tx() as db:
            row = db.execute(f"SELECT state FROM series WHERE series_uid=?{self._dialect.lock_row}",
                             (series_uid,)).fetchone()
            if row is None or SeriesState(row["state"]) is not SeriesState.ROUTED:
                return []
            jobs = db.execute(f"SELECT id, state FROM jobs WHERE series_uid=? AND state!=? ORDER BY id"
                              f"{self._dialect.lock_row}", (series_uid, JobState.SUPERSEDED.value)).fetchall()
            if all(JobState(j["state"]) is JobState.QUEUED for j in jobs):
                return []
            self._transition(db, "series", "series_uid", series_uid, SeriesState.RECEIVED)
            db.execute("UPDATE series SET state=?, generation=generation+1, updated_at=? WHERE series_uid=?",
                       (SeriesState.RECEIVED.value, now, series_uid))
            self._event(db, "series", series_uid, SeriesState.RECEIVED, f"reopened: {detail}")
            for job in jobs:
                db.execute(
                    "UPDATE results SET state=?, lease_owner=NULL, lease_until=NULL, updated_at=?"
                    " WHERE job_id=? AND state IN (?,?) AND kind=?",
                    (ResultState.SUPERSEDED.value, now, job["id"], ResultState.PENDING.value, ResultState.DEAD.value,
                     OutboxKind.DELIVER.value),
                )
                mark_superseded(db, job["id"], now)  # its delivered results are retracted (route permitting)
                self._move(db, job["id"], JobState.SUPERSEDED, detail=f"series reopened: {detail}")
        return [j["id"] for j in jobs]

    def purgeable_series(self, before: float) -> list[str]:
        """Series finished before ``before``: ignored, or routed with every job delivered."""
        rows = self._query(
            "SELECT s.series_uid FROM series s WHERE s.updated_at < :before AND (s.state = :st_ignored OR"
            " (s.state = :st_routed AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.series_uid = s.series_uid"
            " AND (j.state NOT IN (:st_delivered, :st_superseded) OR j.updated_at >= :before))))",
            {"before": before, "st_ignored": SeriesState.IGNORED.value, "st_routed": SeriesState.ROUTED.value,
             "st_delivered": JobState.DELIVERED.value, "st_superseded": JobState.SUPERSEDED.value},
        )
        return [r["series_uid"] for r in rows]

    def purge_series(self, series_uid: str) -> tuple[list[str], list[int]]:
        """Forget a finished series' instances (a re-sent copy is then processed anew).

        Returns the instance paths and job ids whose files the caller removes.
        """
        with self._tx() as db:
            self._transition(db, "series", "series_uid", series_uid, SeriesState.PURGED)
            paths = [r["path"] for r in db.execute("SELECT path FROM instances WHERE series_uid=?", (series_uid,))]
            jobs = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE series_uid=?", (series_uid,))]
            db.execute("DELETE FROM instances WHERE series_uid=?", (series_uid,))
            db.execute("UPDATE series SET state=?, instance_count=0, updated_at=? WHERE series_uid=?",
                       (SeriesState.PURGED.value, time.time(), series_uid))
            self._event(db, "series", series_uid, SeriesState.PURGED, f"{len(paths)} instances")
        return paths, jobs

    def series_events(self, series_uid: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT at, state, detail FROM events WHERE kind='series' AND ref=? ORDER BY id", (series_uid,))
        return [dict(r) for r in rows]

    def series_receive_span(self, series_uid: str) -> tuple[float, float] | None:
        """When the first and the last instance of a series were received."""
        rows = self._query(
            "SELECT MIN(received_at) AS first, MAX(received_at) AS last FROM instances WHERE series_uid=?",
            (series_uid,),
        )
        return (rows[0]["first"], rows[0]["last"]) if rows and rows[0]["first"] is not None else None


def _series_row(r: Any) -> SeriesRow:
    d = dict(r)
    unindexed_last = d.pop("last_unindexed")
    if unindexed_last is not None:
        d["last_received"] = max(d["last_received"], unindexed_last)
    d["attrs"] = json.loads(d["attrs"])
    d["state"] = SeriesState(d["state"])
    return SeriesRow(**d)
