"""The job store: every instance, series, job and result, and every state change.

The store is a contract (:class:`JobStoreContract`) with two backends: SQLite
(:class:`SqliteJobStore`, the embedded default) and PostgreSQL
(:class:`node.store.postgres.PostgresJobStore`, shared by several nodes and workers;
chosen by ``[store] url``, see :func:`open_store`). The queries are written once, split
by concern: ``instances``, ``series``, ``jobs`` (with leases) and ``results`` (with
delivery claims); each backend adds its connection, transactions and schema versions
(``database``, ``postgres``) and the few SQL fragments that differ (``dialect``). Every state it writes is an
enum of :mod:`node.states`, and every change is checked against the allowed transitions
and recorded as a row of ``events``.
"""
from __future__ import annotations

from pathlib import Path

from .applicability import ApplicabilityQueries
from .contract import JobStoreContract
from .database import SqliteDatabase
from .instances import InstanceQueries
from .leases import lease_owner_id, owner_is_gone
from .retractions import RetractionQueries
from .reviews import ReviewQueries
from .rows import InstanceRow, JobRow, ResultObject, ResultRow, SeriesRow
from .series import SeriesQueries
from .studies import StudyQueries

__all__ = [
    "InstanceRow",
    "JobRow",
    "JobStore",
    "JobStoreContract",
    "ResultObject",
    "ResultRow",
    "SeriesRow",
    "SqliteJobStore",
    "lease_owner_id",
    "open_store",
    "owner_is_gone",
]


class SqliteJobStore(InstanceQueries, SeriesQueries, ReviewQueries, RetractionQueries, StudyQueries,
                     ApplicabilityQueries, SqliteDatabase):
    """The job store in one SQLite file (``data_dir/ainode.sqlite``)."""

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        super().__init__(path, busy_timeout=busy_timeout)


JobStore = SqliteJobStore
"""The embedded default backend."""


def open_store(url: str | None, data_dir: Path) -> JobStoreContract:
    """The job store a node is configured with: ``postgresql://...``, or SQLite in ``data_dir`` when ``url`` is None."""
    if url is None:
        return SqliteJobStore(data_dir / "ainode.sqlite")
    from .postgres import PostgresJobStore  # psycopg is needed only by nodes that share a server

    return PostgresJobStore(url)
