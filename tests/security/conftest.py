"""Fixtures: each security store test runs on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faceobfuscator.security.sealing import ServerKeyPair
from faceobfuscator.server.storage import SQLStorage, open_storage

from .dbs import new_schema


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


@pytest.fixture(scope="module")
def server_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerKeyPair, Path]:
    path = tmp_path_factory.mktemp("keys") / "server.key"
    pair = ServerKeyPair.generate()
    pair.save(path)
    return pair, path
