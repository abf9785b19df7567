"""Fixtures: each security store test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .dbs import PostgresDB, PostgresError, PostgresServer, SQLiteDB


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
    except (PostgresError, OSError, KeyError) as exc:
        server.stop()
        pytest.fail(f"cannot start the throwaway PostgreSQL server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteDB | PostgresDB]:
    """An empty database of each back end."""
    database: SQLiteDB | PostgresDB
    if request.param == "sqlite":
        database = SQLiteDB(tmp_path / "security.db")
    else:
        server = request.getfixturevalue("postgres_server")
        database = PostgresDB(server.new_database())
    yield database
    database.close()
