from __future__ import annotations

import base64
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from faceobfuscator.errors import EnvelopeError, RotationError
from faceobfuscator.server.security.envelope import (
    MasterKey,
    MasterKeyring,
    decrypt_record,
    encrypt_record,
    record_key_id,
)
from faceobfuscator.server.security.rotation import EnvelopeRow, SQLEnvelopeStore, rotate
from faceobfuscator.server.storage import SQLStorage, open_storage

OLD = MasterKey(bytes(range(32)))
NEW = MasterKey(bytes(range(100, 132)))


def _q(db: SQLStorage, sql: str) -> str:
    return sql if db.dialect == "sqlite" else sql.replace("?", "%s")


def add_templates(db: SQLStorage, subject: str, n: int, master: MasterKey) -> dict[int, bytes]:
    """Enrol ``n`` random templates for ``subject`` as the server does: insert, then encrypt
    with the id the row got. Returns {template id: plaintext}."""
    out: dict[int, bytes] = {}
    with db.write() as cur:
        cur.execute(_q(db, "SELECT id FROM subjects WHERE name = ?"), (subject,))
        row = cur.fetchone()
        if row is None:
            cur.execute(
                _q(db, "INSERT INTO subjects (name, created_at) VALUES (?, 0) RETURNING id"),
                (subject,),
            )
            row = cur.fetchone()
        for _ in range(n):
            cur.execute(
                _q(
                    db,
                    "INSERT INTO templates (subject_id, payload, protocol_hash, created_at) "
                    "VALUES (?, ?, ?, 0) RETURNING id",
                ),
                (row[0], b"", "ab" * 32),
            )
            tid = int(cur.fetchone()[0])
            plain = os.urandom(64)
            blob = encrypt_record(plain, master, subject=subject, record_id=tid)
            cur.execute(_q(db, "UPDATE templates SET payload = ? WHERE id = ?"), (blob, tid))
            out[tid] = plain
    return out


def stored(db: SQLStorage) -> dict[int, tuple[str, bytes]]:
    with db.read() as cur:
        cur.execute(
            "SELECT t.id, s.name, t.payload FROM templates t JOIN subjects s ON s.id = t.subject_id"
        )
        return {int(r[0]): (r[1], bytes(r[2])) for r in cur.fetchall()}


def assert_all_under(db: SQLStorage, plain: dict[int, bytes], key: MasterKey) -> None:
    """Every row opens under ``key`` to what was enrolled; nothing else is there."""
    rows = stored(db)
    assert sorted(rows) == sorted(plain)
    for tid, (subject, blob) in rows.items():
        assert decrypt_record(blob, key, subject=subject, record_id=tid) == plain[tid]


def assert_key_opens_nothing(db: SQLStorage, key: MasterKey) -> None:
    for tid, (subject, blob) in stored(db).items():
        with pytest.raises(EnvelopeError, match="not configured"):
            decrypt_record(blob, key, subject=subject, record_id=tid)


@pytest.fixture
def gallery(db: SQLStorage) -> tuple[SQLStorage, dict[int, bytes]]:
    plain = add_templates(db, "ann", 7, OLD)
    plain |= add_templates(db, "bob", 6, OLD)
    return db, plain


@pytest.mark.parametrize("reencrypt", [False, True])
def test_rotation_moves_everything_and_retires_the_old_key(gallery, reencrypt: bool) -> None:
    db, plain = gallery
    store = SQLEnvelopeStore(db)
    before = stored(db)
    report = rotate(store, OLD, NEW, batch=4, reencrypt=reencrypt)
    assert (report.moved, report.skipped, report.resumed_from) == (13, 0, None)
    assert report.passes == 2  # one that moved rows, one that found none left
    assert_all_under(db, plain, NEW)
    assert_key_opens_nothing(db, OLD)
    after = stored(db)
    same_ciphertext = [before[t][1][-80:] == after[t][1][-80:] for t in plain]
    assert all(same_ciphertext) != reencrypt
    assert store.rotation_progress() is None
    again = rotate(store, OLD, NEW, batch=4)  # idempotent: nothing left to move
    assert (again.moved, again.passes) == (0, 1)
    assert stored(db) == after


def test_rows_swapped_between_subjects_do_not_decrypt(gallery) -> None:
    db, plain = gallery
    ann, bob = min(plain), max(plain)
    with db.write() as cur:  # an attacker with write access swaps two payloads
        cur.execute(_q(db, "SELECT payload FROM templates WHERE id = ?"), (ann,))
        a = bytes(cur.fetchone()[0])
        cur.execute(_q(db, "SELECT payload FROM templates WHERE id = ?"), (bob,))
        b = bytes(cur.fetchone()[0])
        cur.execute(_q(db, "UPDATE templates SET payload = ? WHERE id = ?"), (b, ann))
        cur.execute(_q(db, "UPDATE templates SET payload = ? WHERE id = ?"), (a, bob))
        # and moves another template of ann's to bob
        cur.execute(
            _q(db, "UPDATE templates SET subject_id = (SELECT id FROM subjects WHERE name = ?) "
                   "WHERE id = ?"),
            ("bob", ann + 1),
        )  # fmt: skip
    rows = stored(db)
    for tid in (ann, bob, ann + 1):
        subject, blob = rows[tid]
        with pytest.raises(EnvelopeError, match="another subject or record"):
            decrypt_record(blob, OLD, subject=subject, record_id=tid)


def test_concurrent_writers_and_deleters_lose_nothing(gallery) -> None:
    """Rotation while the store is in use: one process still on the old key enrols, one
    already on the new key enrols, and templates are deleted."""
    db, plain = gallery
    stop = threading.Event()
    deleted: list[int] = []

    def traffic() -> None:
        for i in range(12):
            master = OLD if i % 2 else NEW
            plain.update(add_templates(db, f"s{i % 3}", 1, master))
            if i % 4 == 0:
                victim = min(plain)
                with db.write() as cur:
                    cur.execute(_q(db, "DELETE FROM templates WHERE id = ?"), (victim,))
                deleted.append(victim)
                del plain[victim]
            time.sleep(0.002)
        stop.set()

    worker = threading.Thread(target=traffic)
    worker.start()
    report = rotate(SQLEnvelopeStore(db), OLD, NEW, batch=2, on_batch=lambda p: time.sleep(0.003))
    worker.join()
    report2 = rotate(SQLEnvelopeStore(db), OLD, NEW, batch=2)  # catches writes after the end
    assert stop.is_set() and len(deleted) == 3
    assert report.moved + report2.moved <= 13 + 6
    assert_all_under(db, plain, NEW)
    assert_key_opens_nothing(db, OLD)


def test_row_changed_between_read_and_write_is_left_alone(gallery) -> None:
    db, plain = gallery
    store = SQLEnvelopeStore(db)
    victim = max(plain)
    real = store.rows_not_under

    def racing(prefix: bytes, *, after: int, limit: int) -> list[EnvelopeRow]:
        rows = real(prefix, after=after, limit=limit)
        if any(r.record_id == victim for r in rows):
            with db.write() as cur:
                cur.execute(_q(db, "DELETE FROM templates WHERE id = ?"), (victim,))
        return rows

    store.rows_not_under = racing  # type: ignore[method-assign]
    report = rotate(store, OLD, NEW, batch=5)
    assert (report.moved, report.skipped) == (12, 1)
    del plain[victim]
    assert_all_under(db, plain, NEW)


def test_refusals(gallery) -> None:
    db, plain = gallery
    store = SQLEnvelopeStore(db)
    third = MasterKey(bytes(32))
    add_templates(db, "eve", 1, third)
    with pytest.raises(RotationError, match=f"under master key {third.key_id}, neither"):
        rotate(store, OLD, NEW, batch=100)
    rows = stored(db)
    assert all(record_key_id(b) != NEW.key_id for _, b in rows.values())  # batch not applied
    with pytest.raises(RotationError, match="same key"):
        rotate(store, OLD, MasterKey(bytes(range(32))))


def test_an_unfinished_rotation_between_other_keys_blocks(gallery) -> None:
    db, _ = gallery
    store = SQLEnvelopeStore(db)
    with pytest.raises(RuntimeError):
        rotate(store, OLD, NEW, batch=3, on_batch=_boom)
    with pytest.raises(RotationError, match="unfinished rotation"):
        rotate(store, OLD, MasterKey(bytes(32)))


def _boom(progress: object) -> None:
    raise RuntimeError("interrupted")


_CHILD = """
import base64, os, sys, time
from faceobfuscator.server.security.envelope import MasterKey
from faceobfuscator.server.security.rotation import SQLEnvelopeStore, rotate
from faceobfuscator.server.storage import open_storage
db = open_storage({target!r})
old, new = (MasterKey(base64.b64decode(os.environ[k])) for k in ("OLD", "NEW"))
print("ready", flush=True)
rotate(SQLEnvelopeStore(db), old, new, batch=3, on_batch=lambda p: time.sleep(0.05))
print("finished", flush=True)
"""


def test_rotation_killed_with_sigkill_resumes(db: SQLStorage, db_url: str) -> None:
    plain = add_templates(db, "ann", 30, OLD)
    code = _CHILD.format(target=db_url)
    env = os.environ | {
        k: base64.b64encode(m._raw).decode() for k, m in (("OLD", OLD), ("NEW", NEW))
    }
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    store = SQLEnvelopeStore(db)
    deadline = time.monotonic() + 30
    progress = None
    while time.monotonic() < deadline:
        progress = store.rotation_progress()
        if progress is not None and progress.moved >= 9:
            break
        assert child.poll() is None, "the rotation ended before it could be killed"
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL
    assert b"finished" not in child.stdout.read()  # type: ignore[union-attr]

    killed = store.rotation_progress()
    assert (
        killed is not None
        and 9 <= killed.moved < 30
        and killed.cursor == min(plain) - 1 + killed.moved
    )
    # nothing lost or half-written: every row opens under one of the two keys
    both = MasterKeyring(NEW, previous=[OLD])
    ids = stored(db)
    on_new = sum(record_key_id(b) == NEW.key_id for _, b in ids.values())
    assert on_new == killed.moved
    for tid, (subject, blob) in ids.items():
        assert decrypt_record(blob, both, subject=subject, record_id=tid) == plain[tid]

    report = rotate(store, OLD, NEW, batch=3)
    assert report.resumed_from == killed
    assert report.moved == 30 and report.skipped == 0
    assert_all_under(db, plain, NEW)
    assert_key_opens_nothing(db, OLD)


def test_deleted_template_leaves_no_decryptable_bytes(tmp_path: Path) -> None:
    """SQLite (secure_delete, WAL checkpointed): scan the raw database file for every
    envelope and try to open each; the deleted template's must be gone, a kept one found."""
    db = open_storage(f"sqlite:///{tmp_path / 'g.db'}")
    plain = add_templates(db, "ann", 3, OLD)
    keep, gone = min(plain), max(plain)
    with db.write() as cur:
        cur.execute("DELETE FROM templates WHERE id = ?", (gone,))
    with sqlite3.connect(tmp_path / "g.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("g.db"))
    opened = {tid: 0 for tid in plain}
    start = raw.find(b"FOBE\x01")
    while start >= 0:
        blob = raw[start : start + 101 + 64]
        for tid in plain:
            try:
                if decrypt_record(blob, OLD, subject="ann", record_id=tid) == plain[tid]:
                    opened[tid] += 1
            except EnvelopeError:
                pass
        start = raw.find(b"FOBE\x01", start + 1)
    assert opened[keep] >= 1  # the scan does find live records
    assert opened[gone] == 0
    db.close()


def test_a_plain_gallery_is_encrypted_by_rotating_from_no_key(db: SQLStorage) -> None:
    plain = add_templates(db, "ann", 4, OLD)
    with db.write() as cur:  # store them as plain mode does: the payload itself
        for tid, p in plain.items():
            cur.execute(_q(db, "UPDATE templates SET payload = ? WHERE id = ?"), (p, tid))
    report = rotate(SQLEnvelopeStore(db), None, NEW, batch=3)
    assert (report.old_key_id, report.moved) == ("plain", 4)
    assert_all_under(db, plain, NEW)
    add_templates(db, "bob", 1, OLD)  # encrypted under another key: not a plain row
    with pytest.raises(RotationError, match=f"already encrypted \\(under master key {OLD.key_id}"):
        rotate(SQLEnvelopeStore(db), None, NEW)
