"""The job store: every instance, series, job and result, and every state change.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed row survives a crash of the
node (SIGKILL); after a power loss the newest rows may be missing, so received
instances are made durable as files first and the spool is reconciled with the store at
start (:meth:`JobStore.known_instance_uids` and :func:`node.spool.Spool.recover`). One
connection guarded by a lock serves all threads of the node.

States::

    series:  received → complete → routed | ignored → purged (files removed after retention)
    job:     routed → running → written → delivered | failed(stage, reason)
    result:  pending → delivered | dead   (per object, per destination)

Every change of a series or job state is also a row in ``events``.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["InstanceRow", "JobStore", "ResultRow", "SeriesRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    sop_class_uid    TEXT NOT NULL,
    path             TEXT NOT NULL,
    received_at      REAL NOT NULL,
    calling_ae       TEXT,
    series_uid       TEXT,            -- filled by the indexer, off the association thread
    index_error      TEXT
);
CREATE INDEX IF NOT EXISTS instances_unindexed ON instances(series_uid) WHERE series_uid IS NULL;
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE TABLE IF NOT EXISTS series (
    series_uid       TEXT PRIMARY KEY,
    study_uid        TEXT NOT NULL,
    state            TEXT NOT NULL,
    attrs            TEXT NOT NULL,   -- JSON of the routing attributes (no patient data)
    instance_count   INTEGER NOT NULL DEFAULT 0,
    first_received   REAL NOT NULL,
    last_received    REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS series_state ON series(state);
CREATE TABLE IF NOT EXISTS jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    series_uid       TEXT NOT NULL,
    route            TEXT NOT NULL,
    model            TEXT NOT NULL,
    destinations     TEXT NOT NULL,   -- JSON list of destination names
    state            TEXT NOT NULL,
    stage            TEXT,
    reason           TEXT,
    engine           TEXT,
    timings          TEXT,            -- JSON: seconds per pipeline stage
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    UNIQUE (series_uid, route)
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE TABLE IF NOT EXISTS results (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id           INTEGER NOT NULL REFERENCES jobs(id),
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid    TEXT NOT NULL,
    path             TEXT NOT NULL,
    destination      TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_error       TEXT,
    updated_at       REAL NOT NULL,
    UNIQUE (sop_instance_uid, destination)
);
CREATE INDEX IF NOT EXISTS results_due ON results(state, next_attempt_at);
CREATE TABLE IF NOT EXISTS events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    at               REAL NOT NULL,
    kind             TEXT NOT NULL,   -- series | job | result
    ref              TEXT NOT NULL,   -- series UID, job id or result id
    state            TEXT NOT NULL,
    detail           TEXT
);
CREATE INDEX IF NOT EXISTS events_ref ON events(kind, ref);
"""


@dataclass(frozen=True)
class InstanceRow:
    sop_instance_uid: str
    sop_class_uid: str
    path: str
    received_at: float
    series_uid: str | None


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    study_uid: str
    state: str
    attrs: dict[str, Any]
    instance_count: int
    first_received: float
    last_received: float


@dataclass(frozen=True)
class ResultRow:
    id: int
    job_id: int
    sop_instance_uid: str
    sop_class_uid: str
    path: str
    destination: str
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None


class JobStore:
    """Durable state of the node, in ``data_dir/ainode.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns later versions introduced to a job store made by an earlier one."""
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "timings" not in columns:
            self._db.execute("ALTER TABLE jobs ADD COLUMN timings TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing ---------------------------------------------------------------------
    def _tx(self) -> "_Transaction":
        return _Transaction(self)

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _event(self, kind: str, ref: str | int, state: str, detail: str | None = None) -> None:
        self._db.execute(
            "INSERT INTO events(at, kind, ref, state, detail) VALUES (?,?,?,?,?)",
            (time.time(), kind, str(ref), state, detail),
        )

    # -- instances --------------------------------------------------------------------
    def has_instance(self, sop_instance_uid: str) -> bool:
        """Whether this SOP Instance UID was already received."""
        return bool(self._query("SELECT 1 FROM instances WHERE sop_instance_uid=?", (sop_instance_uid,)))

    def add_instance(self, sop_instance_uid: str, sop_class_uid: str, path: str, calling_ae: str) -> bool:
        """Record a durable instance; returns False when the UID was already recorded."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO instances(sop_instance_uid, sop_class_uid, path, received_at, calling_ae)"
                " VALUES (?,?,?,?,?)",
                (sop_instance_uid, sop_class_uid, path, time.time(), calling_ae),
            )
            return cur.rowcount == 1

    def known_instance_uids(self) -> set[str]:
        """Every SOP Instance UID the store holds."""
        return {r["sop_instance_uid"] for r in self._query("SELECT sop_instance_uid FROM instances")}

    def unindexed_instances(self, limit: int = 500) -> list[InstanceRow]:
        """Instances whose header has not been read yet, oldest first."""
        rows = self._query(
            "SELECT sop_instance_uid, sop_class_uid, path, received_at, series_uid FROM instances"
            " WHERE series_uid IS NULL AND index_error IS NULL ORDER BY received_at LIMIT ?",
            (limit,),
        )
        return [InstanceRow(**dict(r)) for r in rows]

    def index_instance(
        self, sop_instance_uid: str, series_uid: str, study_uid: str, attrs: Mapping[str, Any], received_at: float
    ) -> str:
        """Attach an instance to its series, creating the series row on first sight.

        Returns the series state after the update (``received`` for a series still
        being assembled; another state means the instance arrived late).
        """
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE instances SET series_uid=? WHERE sop_instance_uid=?", (series_uid, sop_instance_uid))
            row = db.execute("SELECT state FROM series WHERE series_uid=?", (series_uid,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO series(series_uid, study_uid, state, attrs, instance_count, first_received,"
                    " last_received, updated_at) VALUES (?,?,?,?,1,?,?,?)",
                    (series_uid, study_uid, "received", json.dumps(dict(attrs)), received_at, received_at, now),
                )
                self._event("series", series_uid, "received")
                return "received"
            db.execute(
                "UPDATE series SET instance_count=instance_count+1, last_received=MAX(last_received, ?),"
                " updated_at=? WHERE series_uid=?",
                (received_at, now, series_uid),
            )
            return str(row["state"])

    def mark_index_error(self, sop_instance_uid: str, reason: str) -> None:
        """Record that an instance's header could not be read."""
        with self._tx() as db:
            db.execute("UPDATE instances SET index_error=? WHERE sop_instance_uid=?", (reason, sop_instance_uid))
            self._event("instance", sop_instance_uid, "failed", reason)

    def series_instances(self, series_uid: str) -> list[InstanceRow]:
        """The instances of a series."""
        rows = self._query(
            "SELECT sop_instance_uid, sop_class_uid, path, received_at, series_uid FROM instances"
            " WHERE series_uid=? ORDER BY received_at",
            (series_uid,),
        )
        return [InstanceRow(**dict(r)) for r in rows]

    # -- series -----------------------------------------------------------------------
    def series_in_state(self, state: str) -> list[SeriesRow]:
        rows = self._query(
            "SELECT series_uid, study_uid, state, attrs, instance_count, first_received, last_received"
            " FROM series WHERE state=? ORDER BY first_received",
            (state,),
        )
        return [_series_row(r) for r in rows]

    def get_series(self, series_uid: str) -> SeriesRow | None:
        rows = self._query(
            "SELECT series_uid, study_uid, state, attrs, instance_count, first_received, last_received"
            " FROM series WHERE series_uid=?",
            (series_uid,),
        )
        return _series_row(rows[0]) if rows else None

    def purgeable_series(self, before: float) -> list[str]:
        """Series finished before ``before``: ignored, or routed with every job delivered."""
        rows = self._query(
            "SELECT s.series_uid FROM series s WHERE s.updated_at < ? AND (s.state = 'ignored' OR"
            " (s.state = 'routed' AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.series_uid = s.series_uid"
            " AND (j.state != 'delivered' OR j.updated_at >= ?))))",
            (before, before),
        )
        return [r["series_uid"] for r in rows]

    def purge_series(self, series_uid: str) -> tuple[list[str], list[int]]:
        """Forget a finished series' instances (a re-sent copy is then processed anew).

        Returns the instance paths and job ids whose files the caller removes.
        """
        with self._tx() as db:
            paths = [r["path"] for r in db.execute("SELECT path FROM instances WHERE series_uid=?", (series_uid,))]
            jobs = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE series_uid=?", (series_uid,))]
            db.execute("DELETE FROM instances WHERE series_uid=?", (series_uid,))
            db.execute("UPDATE series SET state='purged', updated_at=? WHERE series_uid=?", (time.time(), series_uid))
            self._event("series", series_uid, "purged", f"{len(paths)} instances")
        return paths, jobs

    def set_series_state(self, series_uid: str, state: str, detail: str | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE series SET state=?, updated_at=? WHERE series_uid=?", (state, time.time(), series_uid))
            self._event("series", series_uid, state, detail)

    def route_series(self, series_uid: str, jobs: Sequence[tuple[str, str, Sequence[str]]]) -> list[int]:
        """Mark a complete series routed and create one job per ``(route, model, destinations)``.

        With no jobs the series is marked ``ignored``. Returns the new job ids.
        """
        now = time.time()
        ids: list[int] = []
        with self._tx() as db:
            state = "routed" if jobs else "ignored"
            db.execute("UPDATE series SET state=?, updated_at=? WHERE series_uid=?", (state, now, series_uid))
            self._event("series", series_uid, state, ",".join(r for r, _, _ in jobs) or "no route matches")
            for route, model, dests in jobs:
                cur = db.execute(
                    "INSERT OR IGNORE INTO jobs(series_uid, route, model, destinations, state, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (series_uid, route, model, json.dumps(list(dests)), "routed", now, now),
                )
                if cur.rowcount == 1:
                    ids.append(int(cur.lastrowid))
                    self._event("job", cur.lastrowid, "routed", f"route={route} model={model}")
        return ids

    # -- jobs -------------------------------------------------------------------------
    def jobs_in_state(self, *states: str) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        return [_job_dict(r) for r in self._query(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", states)]

    def jobs_for_series(self, series_uid: str) -> list[dict[str, Any]]:
        return [_job_dict(r) for r in self._query("SELECT * FROM jobs WHERE series_uid=? ORDER BY id", (series_uid,))]

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job_dict(rows[0]) if rows else None

    def list_jobs(self, state: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        if state:
            rows = self._query("SELECT * FROM jobs WHERE state=? ORDER BY id DESC LIMIT ?", (state, limit))
        else:
            rows = self._query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [_job_dict(r) for r in rows]

    def job_counts(self) -> dict[str, int]:
        return {r["state"]: r["n"] for r in self._query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}

    def set_job_state(
        self, job_id: int, state: str, *, stage: str | None = None, reason: str | None = None,
        engine: str | None = None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state=?, stage=?, reason=?, engine=COALESCE(?, engine), updated_at=? WHERE id=?",
                (state, stage, reason, engine, time.time(), job_id),
            )
            detail = f"stage={stage} reason={reason}" if stage or reason else None
            self._event("job", job_id, state, detail)

    def job_written(
        self, job_id: int, results: Sequence[tuple[str, str, str]], destinations: Sequence[str],
        engine: str | None = None, timings: Mapping[str, float] | None = None,
    ) -> None:
        """Mark a job written and queue each ``(sop_uid, sop_class, path)`` for each destination."""
        now = time.time()
        with self._tx() as db:
            for sop_uid, sop_class, path in results:
                for dest in destinations:
                    db.execute(
                        "INSERT OR IGNORE INTO results(job_id, sop_instance_uid, sop_class_uid, path, destination,"
                        " state, next_attempt_at, updated_at) VALUES (?,?,?,?,?,?,?,?)",
                        (job_id, sop_uid, sop_class, path, dest, "pending", now, now),
                    )
            db.execute(
                "UPDATE jobs SET state='written', engine=COALESCE(?, engine), timings=?, updated_at=? WHERE id=?",
                (engine, json.dumps(dict(timings or {})), now, job_id),
            )
            self._event("job", job_id, "written", f"{len(results)} objects")
            if not results or not destinations:
                db.execute("UPDATE jobs SET state='delivered', updated_at=? WHERE id=?", (now, job_id))
                self._event("job", job_id, "delivered", "nothing to deliver")

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

    def job_events(self, job_id: int) -> list[dict[str, Any]]:
        rows = self._query("SELECT at, state, detail FROM events WHERE kind='job' AND ref=? ORDER BY id", (str(job_id),))
        return [dict(r) for r in rows]

    # -- results ----------------------------------------------------------------------
    def due_results(self, now: float, limit: int = 200) -> list[ResultRow]:
        rows = self._query(
            "SELECT id, job_id, sop_instance_uid, sop_class_uid, path, destination, state, attempts,"
            " next_attempt_at, last_error FROM results WHERE state='pending' AND next_attempt_at<=?"
            " ORDER BY id LIMIT ?",
            (now, limit),
        )
        return [ResultRow(**dict(r)) for r in rows]

    def next_result_due(self) -> float | None:
        rows = self._query("SELECT MIN(next_attempt_at) AS t FROM results WHERE state='pending'")
        return rows[0]["t"] if rows and rows[0]["t"] is not None else None

    def job_results(self, job_id: int) -> list[ResultRow]:
        rows = self._query(
            "SELECT id, job_id, sop_instance_uid, sop_class_uid, path, destination, state, attempts,"
            " next_attempt_at, last_error FROM results WHERE job_id=? ORDER BY id",
            (job_id,),
        )
        return [ResultRow(**dict(r)) for r in rows]

    def result_delivered(self, result_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE results SET state='delivered', attempts=attempts+1, last_error=NULL, updated_at=? WHERE id=?",
                (time.time(), result_id),
            )
            self._settle_job(db, result_id)

    def result_failed(self, result_id: int, error: str, retry_at: float | None) -> None:
        """Record a failed attempt; ``retry_at=None`` moves the result to the dead letters."""
        with self._tx() as db:
            state = "pending" if retry_at is not None else "dead"
            db.execute(
                "UPDATE results SET state=?, attempts=attempts+1, last_error=?, next_attempt_at=?, updated_at=?"
                " WHERE id=?",
                (state, error, retry_at if retry_at is not None else 0.0, time.time(), result_id),
            )
            if state == "dead":
                self._event("result", result_id, "dead", error)
                self._settle_job(db, result_id)

    def requeue_dead(self, job_id: int | None = None) -> int:
        """Put dead-lettered results back in the queue (all, or one job's). Returns how many."""
        now = time.time()
        with self._tx() as db:
            where, args = ("state='dead'", ()) if job_id is None else ("state='dead' AND job_id=?", (job_id,))
            jobs = [r["job_id"] for r in db.execute(f"SELECT DISTINCT job_id FROM results WHERE {where}", args)]
            cur = db.execute(
                f"UPDATE results SET state='pending', attempts=0, next_attempt_at=?, updated_at=? WHERE {where}",
                (now, now, *args),
            )
            for jid in jobs:
                db.execute("UPDATE jobs SET state='written', stage=NULL, reason=NULL, updated_at=? WHERE id=?", (now, jid))
                self._event("job", jid, "written", "dead letters requeued")
            return cur.rowcount

    def _settle_job(self, db: sqlite3.Connection, result_id: int) -> None:
        job_id = db.execute("SELECT job_id FROM results WHERE id=?", (result_id,)).fetchone()["job_id"]
        counts = {
            r["state"]: r["n"]
            for r in db.execute("SELECT state, COUNT(*) AS n FROM results WHERE job_id=? GROUP BY state", (job_id,))
        }
        if counts.get("pending"):
            return
        now = time.time()
        if counts.get("dead"):
            reason = db.execute(
                "SELECT destination || ': ' || COALESCE(last_error, '') AS r FROM results"
                " WHERE job_id=? AND state='dead' LIMIT 1",
                (job_id,),
            ).fetchone()["r"]
            db.execute(
                "UPDATE jobs SET state='failed', stage='deliver', reason=?, updated_at=? WHERE id=?",
                (reason, now, job_id),
            )
            self._event("job", job_id, "failed", f"stage=deliver reason={reason}")
        else:
            db.execute("UPDATE jobs SET state='delivered', updated_at=? WHERE id=?", (now, job_id))
            self._event("job", job_id, "delivered")


class _Transaction:
    def __init__(self, store: JobStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        self._store._lock.acquire()
        self._store._db.execute("BEGIN IMMEDIATE")
        return self._store._db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._store._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._store._lock.release()


def _series_row(r: sqlite3.Row) -> SeriesRow:
    d = dict(r)
    d["attrs"] = json.loads(d["attrs"])
    return SeriesRow(**d)


def _job_dict(r: sqlite3.Row) -> dict[str, Any]:
    d = dict(r)
    d["destinations"] = json.loads(d["destinations"])
    d["timings"] = json.loads(d["timings"]) if d.get("timings") else {}
    return d


