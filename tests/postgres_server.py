"""PostgreSQL for the tests: one real server per test session, a fresh database per user.

Import the fixtures into a test module (``from tests.postgres_server import postgres_server,
postgres_url``). Without Debian's ``postgresql`` package the fixtures fail with a message
saying so: these tests are never skipped.
"""
from __future__ import annotations

from typing import Iterator

import pytest

from benchmarks.postgres import PostgresServer

__all__ = ["postgres_server", "postgres_url"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free loopback port in a temporary folder, for the whole session."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres_server.create_database()
