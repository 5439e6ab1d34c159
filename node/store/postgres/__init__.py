"""The job store on a PostgreSQL server: one queue shared by ingest nodes and workers.

The same queries as the SQLite store (:mod:`node.store.instances`, ``series``, ``jobs``,
``results``, ``studies``) over :class:`PostgresDatabase`; claims use ``FOR UPDATE SKIP LOCKED`` with
leases, the schema is versioned (``schema_version``). Needs ``psycopg`` (the
``postgres`` extra).
"""
from __future__ import annotations

from ..applicability import ApplicabilityQueries
from ..instances import InstanceQueries
from ..retractions import RetractionQueries
from ..reviews import ReviewQueries
from ..series import SeriesQueries
from ..studies import StudyQueries
from .database import PostgresDatabase, describe_url
from .schema import SCHEMA_VERSION

__all__ = ["PostgresDatabase", "PostgresJobStore", "SCHEMA_VERSION", "describe_url"]


class PostgresJobStore(InstanceQueries, SeriesQueries, ReviewQueries, RetractionQueries, StudyQueries,
                       ApplicabilityQueries, PostgresDatabase):
    """The job store in a PostgreSQL database (``postgresql://user@host:port/dbname``)."""

    def __init__(self, url: str, connect_timeout: float = 10.0) -> None:
        super().__init__(url, connect_timeout=connect_timeout)
