"""Fixtures: each security store test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faceobfuscator.server.storage import SQLStorage, open_storage
from tests.server.security.dbs import new_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each back end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'security.db'}"
    return new_schema(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[SQLStorage]:
    """The gallery storage on that database: the transactions the security stores use."""
    storage = open_storage(db_url, synchronous="NORMAL")
    yield storage
    storage.close()
