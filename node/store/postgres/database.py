"""The PostgreSQL database under the job store: connection, transactions, the shared queries' placeholders.

One connection per store object, guarded by a lock (as with SQLite): the node's threads
take turns, and several nodes and workers share the server. Transactions run at READ
COMMITTED; the queries lock the rows they change (:data:`node.store.dialect.POSTGRESQL`),
and claims skip the rows another process holds, so two workers never take one job. A
connection lost (a server restart) is opened again by the next call.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from ..dialect import POSTGRESQL, StoreDatabase, as_params, pyformat
from .notices import CHANNEL_PREFIX, NoticeWatch
from .schema import upgrade

__all__ = ["PostgresDatabase", "describe_url"]


def describe_url(url: str) -> str:
    """``host:port/dbname`` of a connection URL, for logs and errors (never the password)."""
    info = conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


class _Connection:
    """A psycopg connection that takes the shared queries' ``?`` and ``:name`` placeholders."""

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Any = ()) -> psycopg.Cursor[dict[str, Any]]:
        return self._conn.execute(pyformat(sql), as_params(args))

    def executemany(self, sql: str, args: Iterable[Any]) -> psycopg.Cursor[dict[str, Any]]:
        cursor = self._conn.cursor()
        params = [as_params(a) for a in args]
        if params:
            cursor.executemany(pyformat(sql), params)
        return cursor


class PostgresDatabase(StoreDatabase):
    """A connection to a PostgreSQL server shared by every node and worker of a site."""

    _dialect = POSTGRESQL

    def __init__(self, url: str, connect_timeout: float = 10.0) -> None:
        self.url = url
        self.where = describe_url(url)
        self._connect_timeout = connect_timeout
        self._lock = threading.RLock()
        try:
            self._conn = self._connect()
        except psycopg.OperationalError as exc:
            raise ConnectionError(f"job store {self.where} cannot be reached: {exc}".strip()) from exc
        upgrade(self._conn, self.where)

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                               connect_timeout=max(1, int(self._connect_timeout)), application_name="ainode")

    def _connection(self) -> _Connection:
        """The open connection, opened again when the server dropped it."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return _Connection(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[_Connection]:
        with self._lock:
            conn = self._connection()
            with self._conn.transaction():
                yield conn

    def watch(self, wakes: Mapping[str, Callable[[], None]]) -> NoticeWatch:
        """Wake-ups from every process sharing this database (``LISTEN``, on a connection of its own)."""
        return NoticeWatch(self.url, wakes).start()

    def _notify(self, db: _Connection, topic: str) -> None:
        db.execute(f"NOTIFY {CHANNEL_PREFIX}{topic}")

    def _query(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()
