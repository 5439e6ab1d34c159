"""The SQLite database under the job store: connection, transactions, schema versions.

SQLite in WAL mode with ``synchronous=NORMAL``: a committed row survives a crash of the
node (SIGKILL); after a power loss the newest rows may be missing, so received
instances are made durable as files first and the spool is reconciled with the store at
start. One connection guarded by a lock serves all threads of the node.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` takes a store
made by any earlier version of the node to the current one at open.
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from ..states import InstanceState, JobState
from .dialect import SQLITE, StoreDatabase
from .tables import SQLITE_TYPES, create_table

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteDatabase", "Transaction"]

_T = SQLITE_TYPES

_SCHEMA = f"""
{create_table("instances", _T)}
{create_table("series", _T)}
{create_table("jobs", _T)}
CREATE INDEX jobs_state ON jobs(state);
{create_table("results", _T)}
{create_table("events", _T)}
"""

# Version 3: study-level routes and process-request filters (a new store gets them with _SCHEMA).
_2_TO_3 = f"""
{create_table("study_routes", _T)}
{create_table("route_filters", _T)}
"""

_LEGACY_TO_2 = """
ALTER TABLE instances ADD COLUMN study_uid TEXT;
ALTER TABLE instances ADD COLUMN state TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN reason TEXT;
UPDATE instances SET state = CASE WHEN index_error IS NOT NULL THEN :st_quarantined
    WHEN series_uid IS NOT NULL THEN :st_indexed ELSE :st_received END, reason = index_error;
DROP INDEX IF EXISTS instances_unindexed;
DROP INDEX IF EXISTS instances_series;
CREATE INDEX instances_state ON instances(state, received_at);
CREATE INDEX instances_series ON instances(series_uid, state);
ALTER TABLE series ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
CREATE TABLE jobs_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT, series_uid TEXT NOT NULL, generation INTEGER NOT NULL DEFAULT 0,
    route TEXT NOT NULL, model TEXT NOT NULL, destinations TEXT NOT NULL, state TEXT NOT NULL, stage TEXT,
    reason TEXT, engine TEXT, timings TEXT, runs INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_until REAL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, UNIQUE (series_uid, generation, route)
);
INSERT INTO jobs_v2(id, series_uid, route, model, destinations, state, stage, reason, engine, timings,
    created_at, updated_at)
    SELECT id, series_uid, route, model, destinations,
        CASE WHEN state IN (:st_legacy_routed, :st_running) THEN :st_queued ELSE state END,
        stage, reason, engine, timings, created_at, updated_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v2 RENAME TO jobs;
CREATE INDEX jobs_state ON jobs(state);
ALTER TABLE results ADD COLUMN lease_owner TEXT;
ALTER TABLE results ADD COLUMN lease_until REAL;
DROP INDEX IF EXISTS results_due;
CREATE INDEX results_due ON results(destination, state, next_attempt_at);
"""

# Version 4: job priorities (issue 32): claimed stat first, round robin by route and sender, then by age.
_3_TO_4 = """
ALTER TABLE jobs ADD COLUMN priority TEXT NOT NULL DEFAULT 'routine';  -- stat | urgent | routine
ALTER TABLE jobs ADD COLUMN sender TEXT NOT NULL DEFAULT '';           -- calling AE title of the series
ALTER TABLE jobs ADD COLUMN claimed_at REAL;                           -- its latest claim (round robin)
CREATE INDEX jobs_fair ON jobs(route, sender, claimed_at);
"""

# Version 5: the radiologist's verdict and retraction (issue 30): an outbox item is a delivery or a
# retraction (an IOCM rejection note); a delivered result marked for retraction; the reviews of a job.
_4_TO_5 = f"""
ALTER TABLE results ADD COLUMN kind TEXT NOT NULL DEFAULT 'deliver';  -- deliver | retract
ALTER TABLE results ADD COLUMN retract_cause TEXT;   -- rejected | superseded: a delivered result to withdraw
ALTER TABLE results ADD COLUMN retraction_id INTEGER;  -- the retract item (results.id) that withdraws it
CREATE INDEX results_job ON results(job_id);
CREATE INDEX results_marked ON results(destination) WHERE retract_cause IS NOT NULL AND retraction_id IS NULL;
{create_table("reviews", _T)}
"""

# Version 6: applicability (issue 30): a job's score, its model's threshold and what its route did.
_5_TO_6 = """
ALTER TABLE jobs ADD COLUMN applicability_score REAL;
ALTER TABLE jobs ADD COLUMN applicability_threshold REAL;
ALTER TABLE jobs ADD COLUMN out_of_domain_action TEXT;  -- withhold | flag | ignore | none (in the domain)
"""

# Version 7: a delivery that a sender took (it may have reached its destination, a stopped node never
# recorded it) is not superseded when its job loses its worker: the job's next run takes its UID over.
_6_TO_7 = """
ALTER TABLE results ADD COLUMN sends INTEGER NOT NULL DEFAULT 0;  -- times a sender took it
"""

SCHEMA_VERSION = 7


def _statements(script: str) -> list[str]:
    """The statements of ``script`` (``executescript`` would commit the open transaction)."""
    lines = [line.split("--")[0] for line in script.splitlines()]
    return [s for s in "\n".join(lines).split(";") if s.strip()]


def _script_step(script: str) -> Callable[[sqlite3.Connection], None]:
    """The migration step that executes the statements of ``script`` (its comment says what it adds)."""
    def step(db: sqlite3.Connection) -> None:
        for statement in _statements(script):
            db.execute(statement)
    return step


_create = _script_step(_SCHEMA + _2_TO_3 + _3_TO_4 + _4_TO_5 + _5_TO_6 + _6_TO_7)
"""A new store: the schema of every version at once."""


def _legacy_to_2(db: sqlite3.Connection) -> None:
    """From the unversioned store of the first releases (jobs unique per series and route)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
    if "timings" not in columns:
        db.execute("ALTER TABLE jobs ADD COLUMN timings TEXT")
    params = {
        "st_quarantined": InstanceState.QUARANTINED.value, "st_indexed": InstanceState.INDEXED.value,
        "st_received": InstanceState.RECEIVED.value, "st_legacy_routed": "routed",
        "st_running": JobState.RUNNING.value, "st_queued": JobState.QUEUED.value,
    }
    for statement in _statements(_LEGACY_TO_2):
        names = {k: v for k, v in params.items() if f":{k}" in statement}
        db.execute(statement, names)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _legacy_to_2, 2: _script_step(_2_TO_3), 3: _script_step(_3_TO_4), 4: _script_step(_4_TO_5),
    5: _script_step(_5_TO_6), 6: _script_step(_6_TO_7),
}
"""``from_version → step`` applied in order; version 0 is an empty file or a legacy store."""


class SqliteDatabase(StoreDatabase):
    """One SQLite connection shared by the node's threads, with safe transactions."""

    _dialect = SQLITE

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                   timeout=busy_timeout)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._upgrade()  # before foreign keys are enforced: a migration may rebuild a referenced table
        self._db.execute("PRAGMA foreign_keys=ON")

    def _upgrade(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if version == 0 and "jobs" not in tables:
                _create(db)
            elif version == 0:
                for step in range(1, SCHEMA_VERSION):  # legacy: as from version 1
                    MIGRATIONS[step](db)
            elif version > SCHEMA_VERSION:
                raise RuntimeError(f"job store {self.path} is schema {version}, newer than this node ({SCHEMA_VERSION})")
            else:
                for step in range(version, SCHEMA_VERSION):
                    MIGRATIONS[step](db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self) -> "Transaction":
        return Transaction(self._lock, self._db)

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()


class Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error) under the store's lock.

    The lock is released whatever happens, including when ``BEGIN`` itself fails (a
    database locked by another process past the busy timeout): one failed transaction
    must never freeze every thread of the node.
    """

    def __init__(self, lock: threading.RLock, db: sqlite3.Connection) -> None:
        self._lock = lock
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._db.execute("COMMIT")
            else:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if exc_type is None:
                raise
        finally:
            self._lock.release()

