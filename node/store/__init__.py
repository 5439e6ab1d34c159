"""The job store: every instance, series, job and result, and every state change.

The store is a contract (:class:`JobStoreContract`) with one backend today, SQLite
(:class:`SqliteJobStore`, the embedded default), split by concern: ``instances``,
``series``, ``jobs`` (with leases) and ``results`` (with delivery claims), over
``database`` (connection, transactions, schema versions). Every state it writes is an
enum of :mod:`node.states`, and every change is checked against the allowed transitions
and recorded as a row of ``events``.
"""
from __future__ import annotations

from pathlib import Path

from .contract import JobStoreContract
from .instances import InstanceQueries
from .leases import lease_owner_id, owner_is_gone
from .results import ResultQueries
from .rows import InstanceRow, ResultRow, SeriesRow
from .series import SeriesQueries

__all__ = [
    "InstanceRow",
    "JobStore",
    "JobStoreContract",
    "ResultRow",
    "SeriesRow",
    "SqliteJobStore",
    "lease_owner_id",
    "owner_is_gone",
]


class SqliteJobStore(InstanceQueries, SeriesQueries, ResultQueries):
    """The job store in one SQLite file (``data_dir/ainode.sqlite``)."""

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        super().__init__(path, busy_timeout=busy_timeout)


JobStore = SqliteJobStore
"""The embedded default backend."""
