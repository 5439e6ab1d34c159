"""Instances: received, then indexed under their series, or quarantined."""
from __future__ import annotations

import json
import time
from typing import Any, Mapping

from ..states import InstanceState, SeriesState
from .dialect import Connection, StoreDatabase
from .rows import InstanceRow

__all__ = ["InstanceQueries"]

_INSTANCE_COLUMNS = "sop_instance_uid, sop_class_uid, path, received_at, series_uid, state"


class InstanceQueries(StoreDatabase):
    """The ``instances`` table, and the series rows that indexing creates or reopens."""

    def has_instance(self, sop_instance_uid: str) -> bool:
        """Whether this SOP Instance UID was already received."""
        return bool(self._query("SELECT 1 FROM instances WHERE sop_instance_uid=?", (sop_instance_uid,)))

    def add_instance(
        self, sop_instance_uid: str, sop_class_uid: str, path: str, calling_ae: str, *,
        series_uid: str | None = None, study_uid: str | None = None, received_at: float | None = None,
    ) -> bool:
        """Record a durable instance; returns False when the UID was already recorded.

        ``series_uid`` given at ingest (the header was read before the answer) lets the
        assembler see the instance before the indexer has filed it.
        """
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO instances(sop_instance_uid, sop_class_uid, path, received_at, calling_ae,"
                " series_uid, study_uid, state) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (sop_instance_uid, sop_class_uid, path, received_at or time.time(), calling_ae, series_uid,
                 study_uid, InstanceState.RECEIVED.value),
            )
            return cur.rowcount == 1

    def add_filed_instance(
        self, sop_instance_uid: str, sop_class_uid: str, path: str, calling_ae: str, *,
        series_uid: str, study_uid: str, attrs: Mapping[str, Any], received_at: float | None = None,
    ) -> InstanceState | None:
        """Record a durable instance whose header was read at ingest, and file it at once.

        One transaction does what :meth:`add_instance` and :meth:`index_instance` do in
        two: the instance is recorded ``indexed`` under its series (created on first
        sight) when that is the plain case, a new series or one still being assembled.
        Anything else stays ``received`` for the indexer, which knows what to do with it:
        a result of this node sent back, an instance arriving after its series was routed
        or purged. Returns ``indexed`` or ``received``; ``None`` when the UID was already
        recorded (nothing changes).
        """
        at = received_at or time.time()
        with self._tx() as db:
            own_result = db.execute("SELECT 1 FROM results WHERE sop_instance_uid=? LIMIT 1",
                                    (sop_instance_uid,)).fetchone() is not None
            state = InstanceState.RECEIVED if own_result else InstanceState.INDEXED
            added = db.execute(
                "INSERT INTO instances(sop_instance_uid, sop_class_uid, path, received_at, calling_ae,"
                " series_uid, study_uid, state) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                (sop_instance_uid, sop_class_uid, path, at, calling_ae, series_uid, study_uid, state.value),
            ).rowcount == 1
            if not added:
                return None
            if own_result:
                return InstanceState.RECEIVED
            if self._new_series(db, series_uid, study_uid, attrs, at):
                return InstanceState.INDEXED
            if self._locked_series_state(db, series_uid) not in (SeriesState.RECEIVED, SeriesState.COMPLETE):
                db.execute("UPDATE instances SET state=? WHERE sop_instance_uid=?",  # late: the indexer's case
                           (InstanceState.RECEIVED.value, sop_instance_uid))
                return InstanceState.RECEIVED
            self._count_instance(db, series_uid, at)
            return InstanceState.INDEXED

    def instance_state(self, sop_instance_uid: str) -> InstanceState | None:
        """The state of a received instance; ``None`` when the UID is not held."""
        rows = self._query("SELECT state FROM instances WHERE sop_instance_uid=?", (sop_instance_uid,))
        return InstanceState(rows[0]["state"]) if rows else None

    def replace_instance(
        self, sop_instance_uid: str, sop_class_uid: str, path: str, calling_ae: str, *,
        series_uid: str | None = None, study_uid: str | None = None, received_at: float | None = None,
    ) -> InstanceState | None:
        """Record a new copy of a held instance (its file already replaced): it is indexed again.

        A quarantined instance is taken back; an indexed one leaves its series' count
        (indexing counts it again, and a routed series sees it as a late instance).
        Returns the state it had; ``None`` when the UID was not held (nothing changes).
        """
        with self._tx() as db:
            row = db.execute(f"SELECT state, series_uid FROM instances WHERE sop_instance_uid=?"
                             f"{self._dialect.lock_row}", (sop_instance_uid,)).fetchone()
            if row is None:
                return None
            old = InstanceState(row["state"])
            if old is not InstanceState.RECEIVED:
                self._transition(db, "instances", "sop_instance_uid", sop_instance_uid, InstanceState.RECEIVED)
            if old is InstanceState.INDEXED and row["series_uid"] is not None:
                db.execute("UPDATE series SET instance_count=instance_count-1 WHERE series_uid=? AND instance_count>0",
                           (row["series_uid"],))
            db.execute(
                "UPDATE instances SET sop_class_uid=?, path=?, received_at=?, calling_ae=?, series_uid=?,"
                " study_uid=?, state=?, reason=NULL WHERE sop_instance_uid=?",
                (sop_class_uid, path, received_at or time.time(), calling_ae, series_uid, study_uid,
                 InstanceState.RECEIVED.value, sop_instance_uid),
            )
            self._event(db, "instance", sop_instance_uid, InstanceState.RECEIVED, f"replaced a {old.value} copy")
            return old

    def known_instance_uids(self) -> set[str]:
        """Every SOP Instance UID the store holds."""
        return {r["sop_instance_uid"] for r in self._query("SELECT sop_instance_uid FROM instances")}

    def unindexed_instances(self, limit: int = 500) -> list[InstanceRow]:
        """Instances whose header has not been read yet, oldest first."""
        rows = self._query(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE state=? ORDER BY received_at LIMIT ?",
            (InstanceState.RECEIVED.value, limit),
        )
        return [_instance_row(r) for r in rows]

    def index_instance(
        self, sop_instance_uid: str, series_uid: str, study_uid: str, attrs: Mapping[str, Any], received_at: float
    ) -> SeriesState:
        """File an instance under its series, creating the series row on first sight.

        A series that was purged (its files removed after retention) and is now sent
        again starts over as a new generation. Returns the series state after the update
        (``received`` for a series being assembled; another state means a late instance).
        """
        now = time.time()
        with self._tx() as db:
            self._transition(db, "instances", "sop_instance_uid", sop_instance_uid, InstanceState.INDEXED)
            db.execute(
                "UPDATE instances SET series_uid=?, study_uid=?, state=? WHERE sop_instance_uid=?",
                (series_uid, study_uid, InstanceState.INDEXED.value, sop_instance_uid),
            )
            if self._new_series(db, series_uid, study_uid, attrs, received_at):
                return SeriesState.RECEIVED
            state = self._locked_series_state(db, series_uid)
            if state is SeriesState.PURGED:
                self._transition(db, "series", "series_uid", series_uid, SeriesState.RECEIVED)
                db.execute(
                    "UPDATE series SET state=?, attrs=?, instance_count=1, first_received=?, last_received=?,"
                    " generation=generation+1, updated_at=? WHERE series_uid=?",
                    (SeriesState.RECEIVED.value, json.dumps(dict(attrs)), received_at, received_at, now, series_uid),
                )
                self._event(db, "series", series_uid, SeriesState.RECEIVED, "received again after its purge")
                return SeriesState.RECEIVED
            self._count_instance(db, series_uid, received_at)
            return state

    def _new_series(self, db: Connection, series_uid: str, study_uid: str, attrs: Mapping[str, Any],
                    at: float) -> bool:
        """Create the series of a first instance received at ``at``; False when it exists already
        (two nodes may file the first instances of one series at once)."""
        created = db.execute(
            "INSERT INTO series(series_uid, study_uid, state, attrs, instance_count, first_received,"
            " last_received, updated_at) VALUES (?,?,?,?,1,?,?,?) ON CONFLICT (series_uid) DO NOTHING",
            (series_uid, study_uid, SeriesState.RECEIVED.value, json.dumps(dict(attrs)), at, at, time.time()),
        ).rowcount == 1
        if created:
            self._event(db, "series", series_uid, SeriesState.RECEIVED)
        return created

    def _locked_series_state(self, db: Connection, series_uid: str) -> SeriesState:
        row = db.execute(f"SELECT state FROM series WHERE series_uid=?{self._dialect.lock_row}",
                         (series_uid,)).fetchone()
        return SeriesState(row["state"])

    def _count_instance(self, db: Connection, series_uid: str, at: float) -> None:
        """One more instance of a series, received at ``at``."""
        db.execute(
            "UPDATE series SET instance_count=instance_count+1,"
            " last_received=CASE WHEN last_received > :at THEN last_received ELSE :at END,"
            " updated_at=:now WHERE series_uid=:uid",
            {"at": at, "now": time.time(), "uid": series_uid},
        )

    def unfiled_instance_count(self) -> int:
        """Acknowledged instances whose series is not known yet (not read at ingest, not yet indexed)."""
        return int(self._query("SELECT COUNT(*) AS n FROM instances WHERE state=? AND series_uid IS NULL",
                               (InstanceState.RECEIVED.value,))[0]["n"])

    def quarantine_instance(self, sop_instance_uid: str, reason: str) -> None:
        """Set an instance aside for good: its header cannot be read or is not acceptable."""
        with self._tx() as db:
            self._transition(db, "instances", "sop_instance_uid", sop_instance_uid, InstanceState.QUARANTINED)
            db.execute("UPDATE instances SET state=?, reason=? WHERE sop_instance_uid=?",
                       (InstanceState.QUARANTINED.value, reason[:500], sop_instance_uid))
            self._event(db, "instance", sop_instance_uid, InstanceState.QUARANTINED, reason[:500])

    def quarantined_instances(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest quarantined instances with their reasons."""
        rows = self._query(
            "SELECT sop_instance_uid, path, received_at, calling_ae, reason FROM instances WHERE state=?"
            " ORDER BY received_at DESC LIMIT ?",
            (InstanceState.QUARANTINED.value, limit),
        )
        return [dict(r) for r in rows]

    def series_instances(self, series_uid: str) -> list[InstanceRow]:
        """The indexed instances of a series."""
        rows = self._query(
            f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE series_uid=? AND state=? ORDER BY received_at",
            (series_uid, InstanceState.INDEXED.value),
        )
        return [_instance_row(r) for r in rows]

    def instance_counts(self) -> dict[str, int]:
        """Instances by state."""
        return {r["state"]: r["n"] for r in self._query("SELECT state, COUNT(*) AS n FROM instances GROUP BY state")}


def _instance_row(r: Any) -> InstanceRow:
    d = dict(r)
    d["state"] = InstanceState(d["state"])
    return InstanceRow(**d)
