"""The shared back end: PostgreSQL through psycopg 3, for several stateless API processes.

Every writing transaction first takes one transaction-scoped advisory lock, so writers are
serialised and the change log's ``seq`` is drawn in commit order (see :mod:`.base`).
Writes are rare next to searches, which read only the in-memory index.

Deleted rows stay in PostgreSQL's heap files until ``VACUUM`` reclaims them (autovacuum does
this in time); run ``VACUUM`` after an erasure to purge them at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faceobfuscator.errors import StorageError
from faceobfuscator.server.storage.base import SQLStorage, disk_full

__all__ = ["PostgresStorage"]

#: The advisory lock key of gallery writers (any fixed 64-bit number).
_WRITE_LOCK = 0x464F4246

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id BIGINT NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    payload BYTEA NOT NULL,
    protocol_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
ALTER TABLE templates ALTER COLUMN payload SET STORAGE EXTERNAL;
CREATE INDEX IF NOT EXISTS templates_subject ON templates(subject_id);
CREATE TABLE IF NOT EXISTS embedding_cache (
    template_id BIGINT PRIMARY KEY REFERENCES templates(id) ON DELETE CASCADE,
    model_hash TEXT NOT NULL,
    sealed BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op SMALLINT NOT NULL,
    template_id BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS followers (
    name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS pruned (
    through BIGINT NOT NULL
);
"""


class PostgresStorage(SQLStorage):
    """Gallery in the PostgreSQL database at ``url``.

    Args:
        url: ``postgresql://user[:password]@host:port/dbname``.
        pool_size: most connections this process holds.
    """

    paramstyle = "%s"

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        with self._write() as cur:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)

    def _connect(self) -> Any:
        try:
            conn = self._psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            # the message may name host and user but never the password
            raise StorageError(
                f"cannot connect to the PostgreSQL gallery: {type(exc).__name__}"
            ) from None
        with self._lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self, write: bool) -> Iterator[Any]:
        if self._closed:
            raise StorageError("the gallery storage is closed")
        if not self._slots.acquire(timeout=60):
            raise StorageError("no PostgreSQL connection became free within 60 s")
        conn = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    if write:
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                    yield cur
            except self._psycopg.OperationalError as exc:
                full = disk_full(exc)  # a DiskFull rolls back; the connection stays usable
                if full is not None:
                    raise full from None
                conn.close()
                raise StorageError("the PostgreSQL gallery connection failed") from None
        finally:
            if conn is not None and not conn.closed and not self._closed:
                self._idle.put(conn)
            self._slots.release()

    def _write(self):  # type: ignore[no-untyped-def]
        return self._tx(True)

    def _read(self):  # type: ignore[no-untyped-def]
        return self._tx(False)

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, self._psycopg.errors.UniqueViolation)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()

    def __repr__(self) -> str:
        return "PostgresStorage(<url>)"
