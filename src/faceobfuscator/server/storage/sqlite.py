"""The embedded back end: one SQLite file in WAL mode, one connection per thread.

Writers take SQLite's write lock at ``BEGIN IMMEDIATE``; readers never block them (WAL).
With ``synchronous=FULL`` an acknowledged write survives power loss, with ``NORMAL`` a crash
of the process. ``secure_delete`` overwrites deleted payloads in the file, and after every
deletion the write-ahead log is checkpointed and truncated, so that the log keeps no copy
of the deleted pages either (best effort: a busy reader postpones it to the next one).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from faceobfuscator.errors import StorageError
from faceobfuscator.server.storage.base import SQLStorage, disk_full

__all__ = ["SQLiteStorage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS subjects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
    payload BLOB NOT NULL,
    protocol_hash TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS templates_subject ON templates(subject_id);
CREATE TABLE IF NOT EXISTS embedding_cache (
    template_id INTEGER PRIMARY KEY REFERENCES templates(id) ON DELETE CASCADE,
    model_hash TEXT NOT NULL,
    sealed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op INTEGER NOT NULL,
    template_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS followers (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS pruned (
    through INTEGER NOT NULL
);
"""


class SQLiteStorage(SQLStorage):
    """Gallery in the SQLite file ``path``.

    Args:
        path: the database file; created with its schema when missing.
        synchronous: ``"FULL"`` or ``"NORMAL"``.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous={synchronous!r}; expected 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        if not self.path.parent.is_dir():
            raise StorageError(f"the folder of the gallery database {self.path} does not exist")
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        with self._write() as cur:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    cur.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StorageError("the gallery storage is closed")
            try:
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=30.0
                )
            except sqlite3.Error as exc:
                raise StorageError(f"cannot open the gallery database {self.path}: {exc}") from None
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _tx(self, begin: str) -> Iterator[sqlite3.Cursor]:
        conn = self._conn()
        cur = conn.cursor()
        try:
            cur.execute(begin)
            yield cur
            conn.commit()
        except BaseException as exc:
            if conn.in_transaction:
                conn.rollback()
            full = disk_full(exc)
            if full is not None:
                raise full from None
            raise
        finally:
            cur.close()

    def _write(self):  # type: ignore[no-untyped-def]
        return self._tx("BEGIN IMMEDIATE")

    def _read(self):  # type: ignore[no-untyped-def]
        return self._tx("BEGIN")

    def _is_unique_violation(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def _after_erasure(self) -> None:
        self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"
