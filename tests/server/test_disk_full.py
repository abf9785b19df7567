"""A full disk (issue 10, item 9): 507 with a clear message, /v1/health reports it, what was
acknowledged survives, and writes work again once space is freed, without a restart.

The full disk is SQLite's own: ``PRAGMA max_page_count`` caps the database file, and a
write past it fails with SQLITE_FULL ("database or disk is full"), the error a full
filesystem gives."""

from __future__ import annotations

import errno
import sqlite3

import pytest
from fastapi.testclient import TestClient

from faceobfuscator.errors import StorageFullError
from faceobfuscator.server import ServerSettings, create_app
from faceobfuscator.server.storage.base import disk_full
from faceobfuscator.server.storage.sqlite import SQLiteStorage
from tests.server.fakes import FakeEmbedder, faces, payloads

PAYLOADS = payloads(faces(12, seed=3), seed=4)
OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def disk(monkeypatch):
    """``disk["full"] = True`` caps every gallery connection at its current size."""
    state = {"full": False}
    real = SQLiteStorage._conn

    def capped(self):
        conn = real(self)
        if state["full"]:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={pages}")
        else:
            conn.execute("PRAGMA max_page_count=1073741823")
        return conn

    monkeypatch.setattr(SQLiteStorage, "_conn", capped)
    return state


def test_full_disk_is_507_reported_by_health_and_recovers(tmp_path, keys, key_hashes, disk):
    settings = ServerSettings(
        model_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'g.db'}", **key_hashes
    )
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as http:
        assert http.post("/v1/subjects", json={"subject": "ann"}, headers=admin).status_code == 201
        ok = http.post("/v1/subjects/ann/templates", content=PAYLOADS[0], headers=admin | OCTET)
        assert ok.status_code == 201
        disk["full"] = True
        answers = [
            http.post("/v1/subjects/ann/templates", content=p, headers=admin | OCTET)
            for p in PAYLOADS[1:]
        ]
        refused = [a for a in answers if a.status_code != 201]
        assert refused and all(a.status_code == 507 for a in refused)
        assert "disk is full" in refused[0].json()["detail"]
        stored = 1 + len(answers) - len(refused)
        health = http.get("/v1/health").json()
        assert health["status"] == "degraded" and "disk is full" in health["storage"]
        listed = http.get("/v1/subjects/ann/templates", headers=admin).json()
        assert len(listed["template_ids"]) == stored  # acknowledged survives, refused absent
        assert health["templates_indexed"] == stored  # and the index holds nothing else

        disk["full"] = False  # space freed: no restart
        again = http.post("/v1/subjects/ann/templates", content=PAYLOADS[1], headers=admin | OCTET)
        assert again.status_code == 201
        health = http.get("/v1/health").json()
        assert health["status"] == "ok" and health["storage"] == "ok"


def test_disk_full_errors_of_every_backend_are_recognised():
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13  # type: ignore[attr-defined]
    assert isinstance(disk_full(full), StorageFullError)
    assert isinstance(disk_full(OSError(errno.ENOSPC, "No space left on device")), StorageFullError)

    class PgDiskFull(Exception):
        sqlstate = "53100"

    assert isinstance(disk_full(PgDiskFull()), StorageFullError)
    assert disk_full(sqlite3.OperationalError("database is locked")) is None
