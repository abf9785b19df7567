"""The in-memory embedding index: which subject owns which template, and the templates'
vectors in a :class:`VectorStore`.

Three stores: :class:`ExactVectors` (float32 rows, one matrix-vector product per search:
the reference, and the choice for small galleries), ``server.pqscan.PQScanVectors`` (faiss
4-bit PQ fast scan, shortlist re-scored on float16: for large ones) and
``server.ann.IVFVectors`` (faiss inverted file over 8-bit codes). Identification ranks subjects by their best-matching
template. Searches share the index (a readers-writer lock); additions and removals are
exclusive.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from faceobfuscator.server.rwlock import ReadWriteLock

__all__ = ["EmbeddingIndex", "ExactVectors", "Match", "TrainedLater", "VectorStore", "top_k_rows"]


@dataclass(frozen=True)
class Match:
    """One subject of an identification: its best cosine similarity."""

    subject_id: int
    name: str
    score: float


def top_k_rows(scores: np.ndarray, owners: np.ndarray, k: int) -> list[tuple[int, int]]:
    """``(row, owner)`` of the best row of each of the ``k`` owners with the highest
    scores, best first.

    Only a growing top slice of the rows is sorted: walking rows by descending score, the
    first row seen of an owner is its best, so the first ``k`` distinct owners are exact.
    """
    n = scores.shape[0]
    if n == 0 or k <= 0:
        return []
    m = min(n, 4 * k)
    while True:
        top = np.arange(n) if m == n else np.argpartition(scores, n - m)[n - m :]
        order = top[np.argsort(-scores[top], kind="stable")]
        seen: dict[int, int] = {}
        for row in order.tolist():
            owner = int(owners[row])
            if owner not in seen:
                seen[owner] = row
                if len(seen) == k:
                    break
        if len(seen) == k or m == n:
            return [(row, owner) for owner, row in seen.items()]
        m = min(n, 4 * m)


class VectorStore(Protocol):
    """Unit embeddings keyed by template id. Callers serialise writes against everything
    else; concurrent reads (``search``, ``vectors``) must be safe."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, emb: np.ndarray) -> None:
        """Add new ids (int64 ``(n,)``) with embeddings ``(n, dim)`` float32."""

    def remove(self, ids: np.ndarray) -> None:
        """Remove ids, all present."""

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored embeddings of ``ids`` ``(n, dim)`` (decoded, when stored as codes)."""
        ...

    def search(self, probe: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Ids and cosine similarities of the (up to) ``m`` rows most similar to ``probe``,
        best first."""
        ...

    def ids(self) -> np.ndarray:
        """Every stored id (any order)."""
        ...

    def nbytes(self) -> int:
        """Bytes held for the vectors and their ids."""
        ...


class ExactVectors:
    """float32 rows kept contiguous (a removed row is replaced by the last one)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._emb = np.empty((0, dim), dtype=np.float32)
        self._tid = np.empty(0, dtype=np.int64)
        self._n = 0
        self._row: dict[int, int] = {}

    def __len__(self) -> int:
        return self._n

    def _reserve(self, n: int) -> None:
        if n <= self._emb.shape[0]:
            return
        cap = max(n, 2 * self._emb.shape[0], 1024)
        for name in ("_emb", "_tid"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def add(self, ids: np.ndarray, emb: np.ndarray) -> None:
        n = len(ids)
        self._reserve(self._n + n)
        self._emb[self._n : self._n + n] = emb
        self._tid[self._n : self._n + n] = ids
        self._row.update(zip(ids.tolist(), range(self._n, self._n + n), strict=True))
        self._n += n

    def remove(self, ids: np.ndarray) -> None:
        for tid in ids.tolist():
            row = self._row.pop(tid)
            last = self._n - 1
            if row != last:  # keep rows contiguous: move the last row into the gap
                self._emb[row] = self._emb[last]
                self._tid[row] = self._tid[last]
                self._row[int(self._tid[row])] = row
            self._n = last

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self._emb[[self._row[t] for t in ids.tolist()]]

    def search(self, probe: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        n = self._n
        scores = self._emb[:n] @ probe
        m = min(m, n)
        top = np.arange(n) if m == n else np.argpartition(scores, n - m)[n - m :]
        order = top[np.argsort(-scores[top], kind="stable")]
        return self._tid[order], scores[order]

    def ids(self) -> np.ndarray:
        return self._tid[: self._n].copy()

    def nbytes(self) -> int:
        return self._n * (4 * self.dim + 8)


class TrainedLater:
    """A store whose codes need training: searched exactly (``_staged``) until
    ``train_size`` templates have arrived, then ``train()`` moves them into the codes and
    later additions go to ``_add_trained``."""

    train_size: int
    _staged: ExactVectors | None

    @property
    def trained(self) -> bool:
        return self._staged is None

    def add(self, ids: np.ndarray, emb: np.ndarray) -> None:
        if self._staged is None:
            self._add_trained(ids, emb)
            return
        self._staged.add(ids, emb)
        if len(self._staged) >= self.train_size:
            self.train()

    def train(self) -> None:
        raise NotImplementedError

    def _add_trained(self, ids: np.ndarray, emb: np.ndarray) -> None:
        raise NotImplementedError


class EmbeddingIndex:
    """Templates' embeddings of one model, keyed by template id. Thread-safe.

    Args:
        dim: embedding size.
        vectors: where the vectors live; default exact float32 rows.
    """

    def __init__(self, dim: int, *, vectors: VectorStore | None = None) -> None:
        if vectors is not None and vectors.dim != dim:
            raise ValueError(f"a vector store of dimension {vectors.dim} for a {dim}-d index")
        self.dim = dim
        self.vectors = vectors if vectors is not None else ExactVectors(dim)
        self._lock = ReadWriteLock()
        self._sid: dict[int, int] = {}
        self._members: dict[int, set[int]] = {}
        self._names: dict[int, str] = {}
        self._by_name: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._sid)

    def __contains__(self, template_id: object) -> bool:
        return template_id in self._sid

    @property
    def kind(self) -> str:
        """``exact`` or the approximate store's name."""
        return getattr(self.vectors, "kind", "exact")

    def add(
        self, template_ids: list[int], subject_ids: list[int], names: list[str], emb: np.ndarray
    ) -> int:
        """Add templates (embeddings ``(n, dim)``); ids already present are left as they
        are. Returns how many were added.

        Raises:
            ValueError: the lists differ in length, or an id appears twice.
        """
        emb = np.asarray(emb, dtype=np.float32).reshape(len(template_ids), self.dim)
        if len(subject_ids) != len(template_ids) or len(names) != len(template_ids):
            raise ValueError("template ids, subject ids and names differ in length")
        if len(set(template_ids)) != len(template_ids):
            raise ValueError("a template id appears twice in one addition")
        with self._lock.write():
            known = self._sid
            keep = [i for i, t in enumerate(template_ids) if t not in known]
            if len(keep) < len(template_ids):
                template_ids = [template_ids[i] for i in keep]
                subject_ids = [subject_ids[i] for i in keep]
                names = [names[i] for i in keep]
                emb = emb[keep]
            known.update(zip(template_ids, subject_ids, strict=True))
            members = self._members
            for tid, sid in zip(template_ids, subject_ids, strict=True):
                if sid in members:
                    members[sid].add(tid)
                else:
                    members[sid] = {tid}
            self._names.update(zip(subject_ids, names, strict=True))
            self._by_name.update(zip(names, subject_ids, strict=True))
            if keep:
                ids = np.asarray(template_ids, dtype=np.int64)
                self.vectors.add(ids, np.ascontiguousarray(emb))
        return len(keep)

    def remove(self, template_ids: list[int]) -> int:
        """Remove templates, forgetting a subject with its last one. Returns how many were
        present."""
        with self._lock.write():
            gone = []
            for tid in template_ids:
                sid = self._sid.pop(tid, None)
                if sid is None:
                    continue
                members = self._members[sid]
                members.discard(tid)
                if not members:
                    del self._members[sid]
                    del self._by_name[self._names.pop(sid)]
                gone.append(tid)
            if gone:
                self.vectors.remove(np.asarray(gone, dtype=np.int64))
        return len(gone)

    def template_ids(self) -> set[int]:
        with self._lock.read():
            return set(self._sid)

    def digest(self) -> str:
        """SHA-256 of the sorted template ids (int64 little-endian): equal for equal sets."""
        ids = np.sort(np.fromiter(self.template_ids(), dtype="<i8"))
        return hashlib.sha256(ids.tobytes()).hexdigest()

    def subject_counts(self) -> dict[str, int]:
        """Templates per subject name."""
        with self._lock.read():
            return {self._names[sid]: len(tids) for sid, tids in self._members.items()}

    def n_subjects(self) -> int:
        return len(self._members)

    def verify(self, name: str, probe: np.ndarray) -> float | None:
        """Best cosine similarity of ``probe`` with the subject's templates, or None when
        the index holds none of them."""
        with self._lock.read():
            sid = self._by_name.get(name)
            if sid is None:
                return None
            ids = np.fromiter(self._members[sid], dtype=np.int64)
            return float((self.vectors.vectors(ids) @ probe).max())

    def search(self, probe: np.ndarray, k: int) -> list[Match]:
        """The ``k`` best subjects for ``probe`` ``(dim,)``, best first."""
        probe = np.ascontiguousarray(probe, dtype=np.float32).reshape(self.dim)
        with self._lock.read():
            n = len(self._sid)
            m = min(n, max(64, 8 * k))
            while m > 0:
                ids, scores = self.vectors.search(probe, m)
                owners = np.fromiter((self._sid[t] for t in ids.tolist()), np.int64, len(ids))
                best = top_k_rows(scores, owners, k)
                # fewer rows than asked: the store has no more to give
                if len(best) == k or len(ids) < m or m >= n:
                    return self._matches(probe, [(sid, float(scores[r])) for r, sid in best])
                m = min(n, 4 * m)
            return []

    def _matches(self, probe: np.ndarray, best: list[tuple[int, float]]) -> list[Match]:
        """Matches, best first. An approximate store may have missed a found subject's
        best template (in a cell it did not probe): score every template of each found
        subject, so that identify's score equals verify's."""
        if isinstance(self.vectors, ExactVectors):
            return [Match(sid, self._names[sid], score) for sid, score in best]
        rescored = []
        for sid, _ in best:
            ids = np.fromiter(self._members[sid], dtype=np.int64)
            rescored.append((sid, float((self.vectors.vectors(ids) @ probe).max())))
        rescored.sort(key=lambda x: -x[1])
        return [Match(sid, self._names[sid], score) for sid, score in rescored]
