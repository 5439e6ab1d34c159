"""What differs between the store's backends, and the base every query mixin talks to.

The queries (``instances``, ``series``, ``jobs``, ``results``) are written once, in the
SQL that SQLite and PostgreSQL share: ``?`` and ``:name`` placeholders, ``ON CONFLICT DO
NOTHING``, ``RETURNING``, ``CASE`` instead of the two-argument ``MAX``. A backend gives
them a connection (``execute``, ``executemany``; rows read by column name), transactions,
its schema, and a :class:`Dialect`: the row locks that only a shared server needs.
SQLite serialises writers (``BEGIN IMMEDIATE``), so its locks are empty; on PostgreSQL a
row read before it is changed is locked (``FOR UPDATE``) and a claim skips the rows
another worker holds (``FOR UPDATE SKIP LOCKED``).

:func:`pyformat` turns the shared placeholders into psycopg's (``%s``, ``%(name)s``).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, Callable, ContextManager, Iterable, Mapping, Protocol, Sequence

from ..states import check_transition

__all__ = ["POSTGRESQL", "SQLITE", "Connection", "Dialect", "StoreDatabase", "Watch", "pyformat"]


@dataclass(frozen=True)
class Dialect:
    """The SQL fragments a backend adds to the shared queries."""

    name: str
    lock_row: str
    """Appended to a ``SELECT`` that reads a row the transaction then changes."""
    skip_locked: str
    """Appended to a ``SELECT`` that claims queued rows: rows another claimer holds are skipped."""


SQLITE = Dialect("sqlite", lock_row="", skip_locked="")
POSTGRESQL = Dialect("postgresql", lock_row=" FOR UPDATE", skip_locked=" FOR UPDATE SKIP LOCKED")


class Connection(Protocol):
    """What the queries use of a connection inside a transaction (``sqlite3`` has it as is)."""

    def execute(self, sql: str, args: Any = ...) -> Any: ...
    def executemany(self, sql: str, args: Iterable[Any]) -> Any: ...


class Watch:
    """What :meth:`StoreDatabase.watch` returns: stop it when the stage stops."""

    def stop(self) -> None:
        """Stop watching (nothing to do here)."""


class StoreDatabase:
    """The base of the query mixins: a backend supplies :meth:`_tx`, :meth:`_query` and a dialect."""

    _dialect: Dialect = SQLITE

    def _tx(self) -> ContextManager[Connection]:
        """A write transaction (committed on success, rolled back on error)."""
        raise NotImplementedError

    def _query(self, sql: str, args: Any = ()) -> list[Any]:
        """The rows of one read, outside any transaction."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def watch(self, wakes: "Mapping[str, Callable[[], None]]") -> "Watch":
        """Call ``wakes[topic]`` when another process queues work of that topic (``jobs``, ``results``).

        Only a shared backend can tell (PostgreSQL: ``LISTEN``/``NOTIFY``); the embedded one
        returns a watch that never calls: its only writer is this process, which wakes its
        stages itself.
        """
        return Watch()

    def _notify(self, db: Connection, topic: str) -> None:
        """Tell the processes watching ``topic`` (at commit) that work of that kind was queued."""

    def _event(self, db: Connection, kind: str, ref: str | int, state: StrEnum, detail: str | None = None) -> None:
        db.execute(
            "INSERT INTO events(at, kind, ref, state, detail) VALUES (?,?,?,?,?)",
            (time.time(), kind, str(ref), state.value, detail),
        )

    def _transition(self, db: Connection, table: str, key: str, ref: Any, new: StrEnum) -> StrEnum | None:
        """Check (and lock) the move of row ``ref`` of ``table`` to ``new``; returns the old state (None: no row)."""
        row = db.execute(f"SELECT state FROM {table} WHERE {key}=?{self._dialect.lock_row}", (ref,)).fetchone()
        if row is None:
            return None
        old = type(new)(row["state"])
        check_transition(old, new)
        return old


_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|(?<!:):([A-Za-z_]\w*)|%")


@lru_cache(maxsize=1024)
def pyformat(sql: str) -> str:
    """``sql`` with ``?`` as ``%s``, ``:name`` as ``%(name)s`` and ``%`` as ``%%`` (string literals kept)."""

    def _one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("'"):
            return token
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return f"%({match.group(1)})s"

    return _TOKENS.sub(_one, sql)


def as_params(args: Any) -> Sequence[Any] | dict[str, Any]:
    """Arguments as psycopg takes them (a tuple, or a dict for named placeholders)."""
    return dict(args) if hasattr(args, "keys") else tuple(args)
