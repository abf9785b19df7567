"""Test databases for the security stores: a SQLite file and a throwaway PostgreSQL server.

:class:`PostgresServer` starts a real PostgreSQL 15 from Debian's binaries in a temporary
directory, listening on a Unix socket only; as root it runs as ``nobody`` (PostgreSQL
refuses to run as root). Import it rather than copying it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PG_BIN = Path(os.environ.get("FACEOBF_PG_BIN", "/usr/lib/postgresql/15/bin"))

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


class PostgresError(RuntimeError):
    pass


class PostgresServer:
    """A throwaway PostgreSQL server in a temporary directory (Unix socket, no TCP, fsync
    off). ``new_database()`` gives each test a schema of its own."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="faceobf-pg-"))
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.dir, nobody.pw_uid, nobody.pw_gid)
            self._as_user = ["runuser", "-u", "nobody", "--"]
        self.data = self.dir / "data"
        self.port = 5432
        self._started = False

    def _run(self, *args: str) -> None:
        cmd = [*self._as_user, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.dir)
        if proc.returncode != 0:
            log = self.dir / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresError(
                f"`{' '.join(args[:2])}` failed ({proc.returncode}): "
                f"{proc.stderr.strip()[-2000:]}\n{tail}"
            )

    def start(self) -> PostgresServer:
        if not (PG_BIN / "pg_ctl").exists():
            raise PostgresError(
                f"PostgreSQL binaries not found in {PG_BIN}; install postgresql-15 "
                "(apt-get install postgresql) or set FACEOBF_PG_BIN"
            )
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
            "-o", f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off",
            "start",
        )  # fmt: skip
        self._started = True
        return self

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.dir}&port={self.port}"

    def new_database(self) -> str:
        """An empty schema of its own (much faster than CREATE DATABASE); returns a URL
        whose connections see only that schema."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return self.conninfo() + f"&options=-c%20search_path%3D{name}"

    def stop(self) -> None:
        if self._started:
            try:
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
            except PostgresError:
                pass
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)


def create_gallery(db: SQLiteDB | PostgresDB) -> None:
    with db.write() as cur:
        for statement in GALLERY_SCHEMA[db.dialect].split(";"):
            if statement.strip():
                cur.execute(statement)
