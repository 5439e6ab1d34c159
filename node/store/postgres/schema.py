"""The PostgreSQL schema of the job store, and its versioned migrations.

The tables and columns are those of the SQLite schema, from the same definitions
(:mod:`node.store.tables`; its version 3, study routes and route filters included), in
PostgreSQL's types: times are ``DOUBLE PRECISION`` (seconds since the epoch, as the node
hands them), row ids are identity columns. ``schema_version`` holds one row, the version;
:data:`MIGRATIONS` takes a database made by any earlier version of the node to
:data:`SCHEMA_VERSION`, under an advisory lock so that nodes starting together migrate once.
"""
from __future__ import annotations

from typing import Callable

import psycopg

from ..tables import POSTGRES_TYPES, create_table

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "upgrade"]

SCHEMA_VERSION = 5

_T = POSTGRES_TYPES

_SCHEMA = f"""
{create_table("instances", _T)}
{create_table("series", _T)}
CREATE INDEX series_study ON series(study_uid);
{create_table("jobs", _T)}
CREATE INDEX jobs_state ON jobs(state, id);
{create_table("results", _T)}
CREATE INDEX results_job ON results(job_id);
{create_table("events", _T)}
{create_table("study_routes", _T)}
CREATE INDEX study_routes_job ON study_routes(job_id);
{create_table("route_filters", _T)}
"""

_1_TO_2 = """
ALTER TABLE jobs ADD COLUMN priority TEXT NOT NULL DEFAULT 'routine';
ALTER TABLE jobs ADD COLUMN sender TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN claimed_at DOUBLE PRECISION;
CREATE INDEX jobs_fair ON jobs(route, sender, claimed_at)
"""
"""Version 2: job priorities (issue 32), the sender of a job's series and its latest claim (round robin)."""


def _1_to_2(conn: psycopg.Connection) -> None:
    for statement in (s for s in _1_TO_2.split(";") if s.strip()):
        conn.execute(statement)


_2_TO_3 = f"""
ALTER TABLE results ADD COLUMN kind TEXT NOT NULL DEFAULT 'deliver';
ALTER TABLE results ADD COLUMN retract_cause TEXT;
ALTER TABLE results ADD COLUMN retraction_id BIGINT;
CREATE INDEX results_marked ON results(destination) WHERE retract_cause IS NOT NULL AND retraction_id IS NULL;
{create_table("reviews", _T)}
"""
"""Version 3: outbox kinds (delivery, retraction), results marked for retraction, reviews (issue 30)."""


def _2_to_3(conn: psycopg.Connection) -> None:
    for statement in (s for s in _2_TO_3.split(";") if s.strip()):
        conn.execute(statement)


_3_TO_4 = """
ALTER TABLE jobs ADD COLUMN applicability_score DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN applicability_threshold DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN out_of_domain_action TEXT
"""
"""Version 4: a job's applicability score, its model's threshold and its route's out-of-domain action (issue 30)."""


def _3_to_4(conn: psycopg.Connection) -> None:
    for statement in (s for s in _3_TO_4.split(";") if s.strip()):
        conn.execute(statement)


_4_TO_5 = "ALTER TABLE results ADD COLUMN sends INTEGER NOT NULL DEFAULT 0"
"""Version 5: how many times a sender took a delivery (it may have reached its destination)."""


def _4_to_5(conn: psycopg.Connection) -> None:
    conn.execute(_4_TO_5)


MIGRATIONS: dict[int, Callable[[psycopg.Connection], None]] = {1: _1_to_2, 2: _2_to_3, 3: _3_to_4, 4: _4_to_5}
"""``from_version → step``, applied in order."""

_LOCK_KEY = 0x61696E6F6465  # "ainode": one advisory lock for every node's migration


def upgrade(conn: psycopg.Connection, where: str) -> int:
    """Create or migrate the schema in one transaction; returns the version found before."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = row["version"] if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"job store {where} is schema {version}, newer than this node ({SCHEMA_VERSION})")
        if version == 0:
            every_version = ";".join((_SCHEMA, _1_TO_2, _2_TO_3, _3_TO_4, _4_TO_5))
            for statement in (s for s in every_version.split(";") if s.strip()):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version(version) VALUES (%s)", (SCHEMA_VERSION,))
            return 0
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
        conn.execute("UPDATE schema_version SET version=%s", (SCHEMA_VERSION,))
        return version
