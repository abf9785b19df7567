"""Master-key rotation: every stored record moves from the old master key to the new one,
in batches, while API processes keep reading and writing.

Resumable: each batch's updates and the rotation's progress commit in one transaction, so a
rotation killed at any point (even by SIGKILL) goes on from its last batch when started
again with the same keys. Idempotent per row: a row already under the new key is never
touched again, and each update applies only if the row still holds what was read
(compare-and-set), so a row deleted or rewritten meanwhile is left alone. When the scan
reaches the end it starts over until one full pass finds nothing under the old key, which
catches rows that processes still configured with the old key wrote meanwhile.

Run API processes with the keyring ``MasterKeyring(new, previous=[old])`` during the
rotation; remove the old key from their settings once it has finished. With no old key
(``old_master=None``) the same routine encrypts a gallery that was stored in plain mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from faceobfuscator.errors import EnvelopeError, RotationError
from faceobfuscator.server.security.envelope import (
    MasterKey,
    encrypt_record,
    is_envelope,
    key_prefix,
    record_key_id,
    reencrypt_record,
    rewrap_record,
)
from faceobfuscator.server.security.sql import Transactions, create_schema, placeholders

__all__ = [
    "EnvelopeRow",
    "RotationProgress",
    "RotationReport",
    "EnvelopeStore",
    "SQLEnvelopeStore",
    "rotate",
]

#: Full passes that may still find rows written under the old key before rotation gives up.
MAX_PASSES = 4

#: The "key id" of plain-mode rows, when a plain gallery is encrypted.
PLAIN = "plain"


@dataclass(frozen=True)
class EnvelopeRow:
    """One stored record: its id, the subject it belongs to and its encrypted blob."""

    record_id: int
    subject: str
    blob: bytes


@dataclass(frozen=True)
class RotationProgress:
    """How far a rotation has gone: every row with ``record_id <= cursor`` in this pass is
    done; ``moved`` counts rows moved so far."""

    old_key_id: str
    new_key_id: str
    cursor: int
    passes: int
    moved: int


@dataclass(frozen=True)
class RotationReport:
    old_key_id: str
    new_key_id: str
    moved: int
    resumed_from: RotationProgress | None
    skipped: int
    passes: int


class EnvelopeStore(Protocol):
    """What :func:`rotate` needs from the store of encrypted records."""

    def rows_not_under(self, prefix: bytes, *, after: int, limit: int) -> list[EnvelopeRow]:
        """Up to ``limit`` rows with ``record_id > after`` whose blob does not start with
        ``prefix``, by ascending id."""
        ...

    def replace_rows(
        self, updates: Sequence[tuple[EnvelopeRow, bytes]], progress: RotationProgress
    ) -> int:
        """In one transaction: set each row's blob to the new one where it still holds the
        old one, and record ``progress`` with ``moved`` increased by the rows changed.
        Returns how many rows changed."""
        ...

    def rotation_progress(self) -> RotationProgress | None:
        """The recorded progress of an unfinished rotation, if any."""
        ...

    def finish_rotation(self) -> None:
        """Forget the recorded progress."""
        ...


_PROGRESS_SCHEMA = {
    dialect: """
CREATE TABLE IF NOT EXISTS key_rotation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    old_key_id TEXT NOT NULL,
    new_key_id TEXT NOT NULL,
    cursor BIGINT NOT NULL,
    passes INTEGER NOT NULL,
    moved BIGINT NOT NULL
)
"""
    for dialect in ("sqlite", "postgresql")
}


class SQLEnvelopeStore:
    """The encrypted templates of the gallery schema (``templates.payload`` joined to
    ``subjects.name``, see :mod:`faceobfuscator.server.storage`), with the rotation's
    progress in a ``key_rotation`` table of the same database."""

    def __init__(self, db: Transactions) -> None:
        self._db = db
        create_schema(db, _PROGRESS_SCHEMA)

    def _q(self, sql: str) -> str:
        return placeholders(self._db, sql)

    def rows_not_under(self, prefix: bytes, *, after: int, limit: int) -> list[EnvelopeRow]:
        substr = "substr" if self._db.dialect == "sqlite" else "substring"
        with self._db.read() as cur:
            cur.execute(
                self._q(
                    "SELECT t.id, s.name, t.payload FROM templates t "
                    "JOIN subjects s ON s.id = t.subject_id "
                    f"WHERE t.id > ? AND {substr}(t.payload, 1, ?) <> ? "
                    "ORDER BY t.id LIMIT ?"
                ),
                (after, len(prefix), prefix, limit),
            )
            rows = cur.fetchall()
        return [EnvelopeRow(int(r[0]), r[1], bytes(r[2])) for r in rows]

    def replace_rows(
        self, updates: Sequence[tuple[EnvelopeRow, bytes]], progress: RotationProgress
    ) -> int:
        changed = 0
        with self._db.write() as cur:
            for row, blob in updates:
                cur.execute(
                    self._q("UPDATE templates SET payload = ? WHERE id = ? AND payload = ?"),
                    (blob, row.record_id, row.blob),
                )
                changed += max(int(cur.rowcount), 0)
            cur.execute(
                self._q(
                    "INSERT INTO key_rotation (id, old_key_id, new_key_id, cursor, passes, moved) "
                    "VALUES (1, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                    "old_key_id = excluded.old_key_id, new_key_id = excluded.new_key_id, "
                    "cursor = excluded.cursor, passes = excluded.passes, moved = excluded.moved"
                ),
                (
                    progress.old_key_id,
                    progress.new_key_id,
                    progress.cursor,
                    progress.passes,
                    progress.moved + changed,
                ),
            )
        return changed

    def rotation_progress(self) -> RotationProgress | None:
        with self._db.read() as cur:
            cur.execute(
                "SELECT old_key_id, new_key_id, cursor, passes, moved FROM key_rotation "
                "WHERE id = 1"
            )
            r = cur.fetchone()
        if r is None:
            return None
        return RotationProgress(r[0], r[1], int(r[2]), int(r[3]), int(r[4]))

    def finish_rotation(self) -> None:
        with self._db.write() as cur:
            cur.execute("DELETE FROM key_rotation")


def rotate(
    store: EnvelopeStore,
    old_master: MasterKey | None,
    new_master: MasterKey,
    *,
    batch: int = 500,
    reencrypt: bool = False,
    on_batch: Callable[[RotationProgress], None] | None = None,
) -> RotationReport:
    """Move every record of ``store`` from ``old_master`` to ``new_master``.

    Args:
        old_master: the key the records are under now; None when they are plain payloads
            (a gallery stored in plain mode, encrypted now for the first time).
        batch: rows per transaction.
        reencrypt: encrypt each record afresh under a new data key (when data keys may have
            leaked) instead of only re-wrapping its data key.
        on_batch: called with the progress after each committed batch.

    Raises :class:`RotationError` if the keys are the same, an unfinished rotation between
    other keys is recorded, a row is under a third key, or processes keep writing under the
    old key.
    """
    if batch < 1:
        raise RotationError(f"batch={batch} must be >= 1")
    old_id, new_id = (PLAIN if old_master is None else old_master.key_id), new_master.key_id
    if old_id == new_id:
        raise RotationError("the old and the new master key are the same key")
    resumed = store.rotation_progress()
    if resumed is not None and (resumed.old_key_id, resumed.new_key_id) != (old_id, new_id):
        raise RotationError(
            f"an unfinished rotation from master key {resumed.old_key_id} to "
            f"{resumed.new_key_id} is recorded; run it to the end with those keys first"
        )
    progress = resumed or RotationProgress(old_id, new_id, cursor=0, passes=1, moved=0)
    prefix = key_prefix(new_master)
    skipped = 0
    found_in_pass = progress.cursor > 0  # a resumed pass may have moved rows before the kill
    while True:
        rows = store.rows_not_under(prefix, after=progress.cursor, limit=batch)
        if not rows:
            if not found_in_pass:
                break
            if progress.passes >= MAX_PASSES:
                raise RotationError(
                    f"{MAX_PASSES} passes each found rows under the old master key: some "
                    "process still writes with it; make the new key current in every "
                    "process's settings, then run the rotation again"
                )
            progress = RotationProgress(old_id, new_id, 0, progress.passes + 1, progress.moved)
            found_in_pass = False
            continue
        found_in_pass = True
        updates = [(row, _moved(row, old_master, new_master, reencrypt)) for row in rows]
        progress = RotationProgress(
            old_id, new_id, rows[-1].record_id, progress.passes, progress.moved
        )
        changed = store.replace_rows(updates, progress)
        skipped += len(updates) - changed
        progress = RotationProgress(
            old_id, new_id, progress.cursor, progress.passes, progress.moved + changed
        )
        if on_batch is not None:
            on_batch(progress)
    store.finish_rotation()
    return RotationReport(old_id, new_id, progress.moved, resumed, skipped, progress.passes)


def _moved(row: EnvelopeRow, old: MasterKey | None, new: MasterKey, reencrypt: bool) -> bytes:
    try:
        if old is None:
            if is_envelope(row.blob):
                raise RotationError(
                    f"record {row.record_id} is already encrypted (under master key "
                    f"{record_key_id(row.blob)}); rotate from that key instead"
                )
            return encrypt_record(row.blob, new, subject=row.subject, record_id=row.record_id)
        key_id = record_key_id(row.blob) if is_envelope(row.blob) else PLAIN
        if key_id != old.key_id:
            raise RotationError(
                f"record {row.record_id} is under master key {key_id}, neither the old "
                f"({old.key_id}) nor the new ({new.key_id}); nothing was changed in its batch"
            )
        if reencrypt:
            return reencrypt_record(
                row.blob, old, new, subject=row.subject, record_id=row.record_id
            )
        return rewrap_record(row.blob, old, new)
    except EnvelopeError as exc:
        raise RotationError(f"record {row.record_id} cannot be rotated: {exc}") from None
