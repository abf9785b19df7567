"""Test databases for the security stores: SQLite files and schemas on the throwaway
PostgreSQL server of the server tests (:mod:`tests.server.pg`)."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# the gallery tables the envelope store works on (a subset of the server's schema)
GALLERY_SCHEMA = {
    "sqlite": """
CREATE TABLE subjects (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);
CREATE TABLE templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    payload BLOB NOT NULL
)
""",
    "postgresql": """
CREATE TABLE subjects (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE templates (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id BIGINT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    payload BYTEA NOT NULL
)
""",
}


class SQLiteDB:
    """:class:`~faceobfuscator.security.sql.Transactions` over one SQLite file (WAL, one
    connection per thread, ``secure_delete`` on, as the gallery storage sets it)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._conn().execute("PRAGMA journal_mode=WAL")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self, begin: str) -> Iterator[Any]:
        conn = self._conn()
        cur = conn.cursor()
        cur.execute(begin)
        try:
            yield cur
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cur.close()

    def write(self) -> Any:
        return self._tx("BEGIN IMMEDIATE")

    def read(self) -> Any:
        return self._tx("BEGIN")

    def close(self) -> None:
        for conn in self._all:
            conn.close()
        self._all = []
        self._local = threading.local()


class PostgresDB:
    """:class:`~faceobfuscator.security.sql.Transactions` over PostgreSQL, one connection
    per thread: from the server's point of view, as many sessions as threads, exactly as
    several API processes would be."""

    dialect = "postgresql"

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def _conn(self) -> Any:
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = psycopg.connect(self.conninfo, autocommit=True)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        conn = self._conn()
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    def write(self) -> Any:
        return self._tx()

    def read(self) -> Any:
        return self._tx()

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


def new_schema(server_url: str) -> str:
    """An empty schema of its own on the test server (much faster than CREATE DATABASE);
    returns a URL whose connections see only that schema."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return server_url + f"?options=-c%20search_path%3D{name}"


def create_gallery(db: SQLiteDB | PostgresDB) -> None:
    with db.write() as cur:
        for statement in GALLERY_SCHEMA[db.dialect].split(";"):
            if statement.strip():
                cur.execute(statement)
