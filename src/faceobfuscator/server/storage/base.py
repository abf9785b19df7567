"""The gallery schema and every query, shared by the SQLite and PostgreSQL back ends.

Tables::

    subjects        id, name (unique), created_at
    templates       id, subject_id -> subjects, payload (the client's obfuscated payload,
                    as sent, or its envelope encryption when a master key is set, see
                    faceobfuscator.server.security.envelope), protocol_hash, created_at
    embedding_cache template_id -> templates, model_hash, sealed (AES-GCM, optional)
    changes         seq, op (1 add, 2 delete), template_id: the change log
    followers       name, seq, seen_at: how far each API process has applied the log
    pruned          through: the log holds every change after this seq

The change log is how API processes sharing one database learn of each other's enrolments
and deletions: each applies the log in ``seq`` order. Writers are serialised (SQLite's
write lock, a PostgreSQL advisory lock taken before ``seq`` is drawn), so ``seq`` order is
commit order and a reader that has seen ``seq`` has seen everything before it. The log
holds integer ids only, nothing about a deleted subject. It is pruned up to the oldest
position of the processes seen recently (:meth:`SQLStorage.prune_changes`); a process that
finds itself behind ``pruned`` reloads its index.

Queries use ``?`` placeholders; a back end may rewrite them (:attr:`SQLStorage.paramstyle`).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from faceobfuscator.errors import (
    StorageFullError,
    SubjectExistsError,
    UnknownSubjectError,
    UnknownTemplateError,
)

__all__ = ["SubjectRecord", "TemplateRef", "RefPage", "Change", "SQLStorage", "ADD", "DELETE"]

ADD = 1
DELETE = 2


@dataclass(frozen=True)
class SubjectRecord:
    name: str
    created_at: float
    n_templates: int


@dataclass(frozen=True)
class RefPage:
    """Templates as columns (start-up reads a million): ids, subject ids, subject names
    and the cached sealed embedding of each (None: not cached)."""

    template_ids: list[int]
    subject_ids: list[int]
    names: list[str]
    sealed: list[bytes | None]

    def refs(self, rows: Sequence[int]) -> list[TemplateRef]:
        return [TemplateRef(self.template_ids[i], self.subject_ids[i], self.names[i]) for i in rows]


@dataclass(frozen=True)
class TemplateRef:
    """Where a template belongs, without its payload."""

    template_id: int
    subject_id: int
    name: str


@dataclass(frozen=True)
class Change:
    seq: int
    op: int
    template_id: int


Sealer = Callable[[int], bytes]
#: Encrypts a payload for storage, given its subject's name and template id.
Protector = Callable[[str, int, bytes], bytes]

_SUBJECT_COLUMNS = """
    SELECT s.name, s.created_at, COUNT(t.id)
    FROM subjects s LEFT JOIN templates t ON t.subject_id = s.id
"""


class SQLStorage:
    """Gallery operations over a DB-API connection; back ends supply transactions.

    Subclasses implement :meth:`_write` (a serialised read-write transaction yielding a
    cursor), :meth:`_read` (a read-only transaction), :meth:`_is_unique_violation` and
    :meth:`close`.
    """

    paramstyle = "?"

    def _write(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _is_unique_violation(self, exc: Exception) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _after_erasure(self) -> None:
        """Called after deletions; back ends may purge copies of deleted rows."""

    def _q(self, sql: str) -> str:
        return sql if self.paramstyle == "?" else sql.replace("?", self.paramstyle)

    # transactions for other stores in the same database (challenges, key rotation)

    @property
    def dialect(self) -> str:
        return "sqlite" if self.paramstyle == "?" else "postgresql"

    def write(self) -> AbstractContextManager[Any]:
        """A serialised read-write transaction yielding a cursor."""
        return self._write()

    def read(self) -> AbstractContextManager[Any]:
        return self._read()

    # subjects

    def create_subject(self, name: str) -> SubjectRecord:
        now = time.time()
        try:
            with self._write() as cur:
                cur.execute(
                    self._q("INSERT INTO subjects (name, created_at) VALUES (?, ?)"), (name, now)
                )
        except Exception as exc:
            if self._is_unique_violation(exc):
                raise SubjectExistsError(name) from None
            raise
        return SubjectRecord(name, now, 0)

    def get_subject(self, name: str) -> SubjectRecord:
        with self._read() as cur:
            cur.execute(
                self._q(_SUBJECT_COLUMNS + " WHERE s.name = ? GROUP BY s.id, s.name, s.created_at"),
                (name,),
            )
            row = cur.fetchone()
        if row is None:
            raise UnknownSubjectError(name)
        return SubjectRecord(row[0], float(row[1]), int(row[2]))

    def list_subjects(self, *, limit: int, offset: int = 0) -> list[SubjectRecord]:
        with self._read() as cur:
            cur.execute(
                self._q(
                    _SUBJECT_COLUMNS
                    + " GROUP BY s.id, s.name, s.created_at ORDER BY s.name LIMIT ? OFFSET ?"
                ),
                (limit, offset),
            )
            rows = cur.fetchall()
        return [SubjectRecord(r[0], float(r[1]), int(r[2])) for r in rows]

    def count(self) -> tuple[int, int]:
        """Numbers of subjects and of templates."""
        with self._read() as cur:
            cur.execute("SELECT (SELECT COUNT(*) FROM subjects), (SELECT COUNT(*) FROM templates)")
            row = cur.fetchone()
        return int(row[0]), int(row[1])

    def delete_subject(self, name: str) -> list[int]:
        """Delete a subject with its templates and cached embeddings; returns the ids of
        the templates removed."""
        with self._write() as cur:
            sid = self._subject_id(cur, name)
            cur.execute(
                self._q("SELECT id FROM templates WHERE subject_id = ? ORDER BY id"), (sid,)
            )
            tids = [int(r[0]) for r in cur.fetchall()]
            self._log(cur, DELETE, tids)
            cur.execute(
                self._q(
                    "DELETE FROM embedding_cache WHERE template_id IN "
                    "(SELECT id FROM templates WHERE subject_id = ?)"
                ),
                (sid,),
            )
            cur.execute(self._q("DELETE FROM templates WHERE subject_id = ?"), (sid,))
            cur.execute(self._q("DELETE FROM subjects WHERE id = ?"), (sid,))
        self._after_erasure()
        return tids

    def _subject_id(self, cur: Any, name: str) -> int:
        cur.execute(self._q("SELECT id FROM subjects WHERE name = ?"), (name,))
        row = cur.fetchone()
        if row is None:
            raise UnknownSubjectError(name)
        return int(row[0])

    def _log(self, cur: Any, op: int, template_ids: Sequence[int]) -> None:
        if template_ids:
            cur.executemany(
                self._q("INSERT INTO changes (op, template_id) VALUES (?, ?)"),
                [(op, t) for t in template_ids],
            )

    # templates

    def add_template(
        self,
        name: str,
        payload: bytes,
        *,
        protocol_hash: str,
        seal: Sealer | None = None,
        model_hash: str = "",
        protect: Protector | None = None,
    ) -> TemplateRef:
        """Store one payload for subject ``name``, with its sealed embedding when ``seal``
        is given, in one transaction."""
        return self.add_templates(
            [(name, payload)],
            protocol_hash=protocol_hash,
            seal=seal,
            model_hash=model_hash,
            protect=protect,
        )[0]

    def add_templates(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        protocol_hash: str,
        seal: Sealer | None = None,
        model_hash: str = "",
        create_subjects: bool = False,
        protect: Protector | None = None,
    ) -> list[TemplateRef]:
        """Store ``(subject name, payload)`` pairs in one transaction: all or none.

        ``protect`` (encrypted storage) replaces each payload by what it returns for the
        subject's name and the template's id, which the row gets on insertion."""
        now = time.time()
        refs: list[TemplateRef] = []
        with self._write() as cur:
            ids: dict[str, int] = {}
            for name, payload in items:
                if name not in ids:
                    if create_subjects:
                        cur.execute(
                            self._q(
                                "INSERT INTO subjects (name, created_at) VALUES (?, ?) "
                                "ON CONFLICT (name) DO NOTHING"
                            ),
                            (name, now),
                        )
                    ids[name] = self._subject_id(cur, name)
                cur.execute(
                    self._q(
                        "INSERT INTO templates (subject_id, payload, protocol_hash, created_at) "
                        "VALUES (?, ?, ?, ?) RETURNING id"
                    ),
                    # encrypted storage inserts a placeholder: the plain payload must not
                    # reach the disk even as a dead row version
                    (ids[name], payload if protect is None else b"", protocol_hash, now),
                )
                tid = int(cur.fetchone()[0])
                if protect is not None:
                    cur.execute(
                        self._q("UPDATE templates SET payload = ? WHERE id = ?"),
                        (protect(name, tid, payload), tid),
                    )
                if seal is not None:
                    cur.execute(
                        self._q(
                            "INSERT INTO embedding_cache (template_id, model_hash, sealed) "
                            "VALUES (?, ?, ?)"
                        ),
                        (tid, model_hash, seal(tid)),
                    )
                refs.append(TemplateRef(tid, ids[name], name))
            self._log(cur, ADD, [r.template_id for r in refs])
        return refs

    def delete_template(self, name: str, template_id: int) -> None:
        with self._write() as cur:
            sid = self._subject_id(cur, name)
            cur.execute(
                self._q("SELECT 1 FROM templates WHERE id = ? AND subject_id = ?"),
                (template_id, sid),
            )
            if cur.fetchone() is None:
                raise UnknownTemplateError(name, template_id)
            self._log(cur, DELETE, [template_id])
            cur.execute(
                self._q("DELETE FROM embedding_cache WHERE template_id = ?"), (template_id,)
            )
            cur.execute(self._q("DELETE FROM templates WHERE id = ?"), (template_id,))
        self._after_erasure()

    def template_ids(self, name: str | None = None) -> list[int]:
        """Ids of every template, or of one subject's, ascending."""
        with self._read() as cur:
            if name is None:
                cur.execute("SELECT id FROM templates ORDER BY id")
            else:
                cur.execute(
                    self._q(
                        "SELECT t.id FROM templates t JOIN subjects s ON s.id = t.subject_id "
                        "WHERE s.name = ? ORDER BY t.id"
                    ),
                    (name,),
                )
            return [int(r[0]) for r in cur.fetchall()]

    def _pages(self, sql: str, head: tuple, batch: int) -> Iterator[list[Any]]:
        """Rows of ``sql`` (its first column the template id; its last two parameters
        ``t.id > ?`` and ``LIMIT ?``) in pages of ``batch`` by ascending id."""
        last = 0
        while True:
            with self._read() as cur:
                cur.execute(self._q(sql), (*head, last, batch))
                rows = cur.fetchall()
            if not rows:
                return
            yield rows
            last = int(rows[-1][0])

    def iter_refs(self, *, batch: int = 1000) -> Iterator[list[TemplateRef]]:
        """Every template's :class:`TemplateRef`, in pages of ``batch`` by ascending id."""
        sql = (
            "SELECT t.id, t.subject_id, s.name FROM templates t "
            "JOIN subjects s ON s.id = t.subject_id WHERE t.id > ? ORDER BY t.id LIMIT ?"
        )
        for rows in self._pages(sql, (), batch):
            yield [TemplateRef(int(r[0]), int(r[1]), r[2]) for r in rows]

    def iter_refs_sealed(self, model_hash: str, *, batch: int = 10_000) -> Iterator[RefPage]:
        """Every template's ref with its cached sealed embedding of ``model_hash``, in
        pages of ``batch`` by ascending id: start-up's one query a page."""
        sql = (
            "SELECT t.id, t.subject_id, s.name, c.sealed FROM templates t "
            "JOIN subjects s ON s.id = t.subject_id "
            "LEFT JOIN embedding_cache c ON c.template_id = t.id AND c.model_hash = ? "
            "WHERE t.id > ? ORDER BY t.id LIMIT ?"
        )
        for rows in self._pages(sql, (model_hash,), batch):
            ids, sids, names, sealed = (list(c) for c in zip(*rows, strict=True))
            yield RefPage(ids, sids, names, [None if b is None else bytes(b) for b in sealed])

    def refs(self, template_ids: Sequence[int]) -> list[TemplateRef]:
        """The refs of those of ``template_ids`` that still exist."""
        out: list[TemplateRef] = []
        for chunk in _chunks(template_ids, 500):
            marks = ",".join("?" * len(chunk))
            with self._read() as cur:
                cur.execute(
                    self._q(
                        "SELECT t.id, t.subject_id, s.name FROM templates t "
                        f"JOIN subjects s ON s.id = t.subject_id WHERE t.id IN ({marks})"
                    ),
                    tuple(chunk),
                )
                out.extend(TemplateRef(int(r[0]), int(r[1]), r[2]) for r in cur.fetchall())
        return sorted(out, key=lambda r: r.template_id)

    def payloads(self, template_ids: Sequence[int]) -> dict[int, bytes]:
        """Stored payloads of those of ``template_ids`` that still exist."""
        return self._by_id("SELECT id, payload FROM templates WHERE id IN ({})", template_ids)

    def sealed_embeddings(self, template_ids: Sequence[int], model_hash: str) -> dict[int, bytes]:
        """Cached sealed embeddings of ``model_hash`` for ``template_ids``."""
        return self._by_id(
            "SELECT template_id, sealed FROM embedding_cache "
            "WHERE model_hash = ? AND template_id IN ({})",
            template_ids,
            (model_hash,),
        )

    def _by_id(self, sql: str, ids: Sequence[int], head: tuple = ()) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for chunk in _chunks(ids, 500):
            with self._read() as cur:
                cur.execute(self._q(sql.format(",".join("?" * len(chunk)))), head + tuple(chunk))
                out.update((int(r[0]), bytes(r[1])) for r in cur.fetchall())
        return out

    def put_sealed(self, rows: Sequence[tuple[int, bytes]], model_hash: str) -> None:
        """Cache sealed embeddings ``(template id, sealed)``, replacing any older entry;
        templates deleted meanwhile are skipped."""
        if not rows:
            return
        with self._write() as cur:
            cur.executemany(
                self._q(
                    "INSERT INTO embedding_cache (template_id, model_hash, sealed) "
                    "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM templates WHERE id = ?) "
                    "ON CONFLICT (template_id) DO UPDATE "
                    "SET model_hash = excluded.model_hash, sealed = excluded.sealed"
                ),
                [(tid, model_hash, sealed, tid) for tid, sealed in rows],
            )

    def protocol_hashes(self) -> list[str]:
        """The distinct protocol hashes of the stored payloads."""
        with self._read() as cur:
            cur.execute("SELECT DISTINCT protocol_hash FROM templates")
            return sorted(r[0] for r in cur.fetchall())

    # change log

    def last_seq(self) -> int:
        with self._read() as cur:
            cur.execute("SELECT COALESCE(MAX(seq), 0) FROM changes")
            return int(cur.fetchone()[0])

    def report_applied(self, follower: str, seq: int) -> None:
        """Record that the process ``follower`` has applied the log up to ``seq``."""
        with self._write() as cur:
            cur.execute(self._q("DELETE FROM followers WHERE name = ?"), (follower,))
            cur.execute(
                self._q("INSERT INTO followers (name, seq, seen_at) VALUES (?, ?, ?)"),
                (follower, seq, time.time()),
            )

    def prune_changes(self, *, keep_s: float) -> int:
        """Delete the changes every process seen in the last ``keep_s`` seconds has
        applied (the newest of them stays, so that ``last_seq`` holds); returns how many.
        Processes not seen for longer are forgotten: if they come back behind, they
        reload."""
        with self._write() as cur:
            cur.execute(self._q("DELETE FROM followers WHERE seen_at < ?"), (time.time() - keep_s,))
            cur.execute("SELECT MIN(seq) FROM followers")
            horizon = cur.fetchone()[0]
            if horizon is None:
                return 0
            cur.execute(self._q("DELETE FROM changes WHERE seq < ?"), (int(horizon),))
            removed = max(0, int(cur.rowcount))
            cur.execute("SELECT COALESCE(MAX(through), 0) FROM pruned")
            through = max(int(cur.fetchone()[0]), int(horizon) - 1)
            cur.execute("DELETE FROM pruned")
            cur.execute(self._q("INSERT INTO pruned (through) VALUES (?)"), (through,))
        return removed

    def pruned_through(self) -> int:
        """The log holds every change after this seq (0: never pruned)."""
        with self._read() as cur:
            cur.execute("SELECT COALESCE(MAX(through), 0) FROM pruned")
            return int(cur.fetchone()[0])

    def changes_since(self, seq: int, *, limit: int = 10_000) -> list[Change]:
        with self._read() as cur:
            cur.execute(
                self._q(
                    "SELECT seq, op, template_id FROM changes WHERE seq > ? ORDER BY seq LIMIT ?"
                ),
                (seq, limit),
            )
            return [Change(int(r[0]), int(r[1]), int(r[2])) for r in cur.fetchall()]


def _chunks(seq: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


_SQLITE_FULL = 13  # SQLITE_FULL
_PG_DISK_FULL = "53100"  # SQLSTATE disk_full


def disk_full(exc: BaseException) -> StorageFullError | None:
    """The :class:`StorageFullError` that ``exc`` amounts to when it reports a full disk
    (SQLite's SQLITE_FULL, PostgreSQL's disk_full, an ENOSPC ``OSError``), else None."""
    full = (
        getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
        or getattr(exc, "sqlstate", None) == _PG_DISK_FULL
        or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
    )
    return StorageFullError(type(exc).__name__) if full else None
