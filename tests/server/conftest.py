"""Fixtures of the server tests: storage over both back ends, a fast embedder, keys."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceobfuscator.server.keys import key_digest, new_api_key
from faceobfuscator.server.storage import SQLStorage, open_storage
from tests.server.fakes import FakeEmbedder

_db_numbers = itertools.count()


@pytest.fixture(scope="session")
def pg_server(postgres_url: str) -> str:
    """The run's PostgreSQL server (see tests/conftest.py)."""
    return postgres_url


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A fresh, empty database on the test server."""
    import psycopg

    name = f"faceobf_test_{os.getpid()}_{next(_db_numbers)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gallery.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def storage(db_url: str) -> Iterator[SQLStorage]:
    s = open_storage(db_url)
    yield s
    s.close()


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="session")
def keys() -> dict[str, str]:
    return {"admin": new_api_key(), "client": new_api_key()}


@pytest.fixture(scope="session")
def key_hashes(keys: dict[str, str]) -> dict[str, tuple[str, ...]]:
    return {
        "admin_key_hashes": (key_digest(keys["admin"]),),
        "client_key_hashes": (key_digest(keys["client"]),),
    }
