"""A throw-away PostgreSQL server for tests: ``initdb`` and ``pg_ctl`` in a temporary
folder, listening on a free loopback port, run as an unprivileged user when the tests run
as root (PostgreSQL refuses to run as root). ``FACEOBF_TEST_PG_URL`` points the tests at an
existing server instead."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["temporary_postgres", "PostgresUnavailable"]


class PostgresUnavailable(RuntimeError):
    pass


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found (no pg_ctl on PATH or in "
            "/usr/lib/postgresql/*/bin); install them: apt-get install -y postgresql-15"
        )
    return Path(candidates[0]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _runner() -> tuple[list[str], int | None, int | None]:
    """Command prefix and uid/gid that run PostgreSQL as a non-root user."""
    if os.geteuid() != 0:
        return [], None, None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return ["runuser", "-u", name, "--"], pw.pw_uid, pw.pw_gid
    raise PostgresUnavailable("running as root and neither user 'postgres' nor 'nobody' exists")


@contextmanager
def temporary_postgres() -> Iterator[str]:
    """Yield the URL of a fresh PostgreSQL server; stop and delete it afterwards."""
    bindir = _bindir()
    prefix, uid, gid = _runner()
    root = Path(tempfile.mkdtemp(prefix="faceobf-pg-"))
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    data, log = root / "data", root / "log"
    port = _free_port()

    def run(*cmd: str) -> None:
        done = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-2000:]
            if log.exists():
                tail += "\n--- server log ---\n" + log.read_text()[-2000:]
            raise PostgresUnavailable(f"{Path(cmd[0]).name} failed ({done.returncode}):\n{tail}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
