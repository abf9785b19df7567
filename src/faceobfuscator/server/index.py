"""The in-memory embedding index: exact cosine search over L2-normalised float32 rows.

Rows are kept contiguous (a removed row is replaced by the last one) so that a search is one
matrix-vector product over ``(n, d)`` float32 and a partial sort. Identification ranks
subjects by their best-matching template.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["EmbeddingIndex", "Match", "top_k_rows"]


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


class EmbeddingIndex:
    """Templates' embeddings of one model, keyed by template id. Thread-safe.

    Args:
        dim: embedding size.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._lock = threading.RLock()
        self._emb = np.empty((0, dim), dtype=np.float32)
        self._tid = np.empty(0, dtype=np.int64)
        self._sid = np.empty(0, dtype=np.int64)
        self._n = 0
        self._row: dict[int, int] = {}
        self._members: dict[int, set[int]] = {}
        self._names: dict[int, str] = {}
        self._by_name: dict[str, int] = {}

    def __len__(self) -> int:
        return self._n

    def __contains__(self, template_id: object) -> bool:
        return template_id in self._row

    def _reserve(self, n: int) -> None:
        if n <= self._emb.shape[0]:
            return
        cap = max(n, 2 * self._emb.shape[0], 1024)
        for name in ("_emb", "_tid", "_sid"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self._n] = old[: self._n]
            setattr(self, name, new)

    def add(
        self, template_ids: list[int], subject_ids: list[int], names: list[str], emb: np.ndarray
    ) -> int:
        """Add templates (embeddings ``(n, dim)``); ids already present are left as they
        are. Returns how many were added."""
        emb = np.asarray(emb, dtype=np.float32).reshape(len(template_ids), self.dim)
        added = 0
        with self._lock:
            self._reserve(self._n + len(template_ids))
            for tid, sid, name, vec in zip(template_ids, subject_ids, names, emb, strict=True):
                if tid in self._row:
                    continue
                row = self._n
                self._emb[row] = vec
                self._tid[row] = tid
                self._sid[row] = sid
                self._row[tid] = row
                self._members.setdefault(sid, set()).add(tid)
                self._names[sid] = name
                self._by_name[name] = sid
                self._n += 1
                added += 1
        return added

    def remove(self, template_ids: list[int]) -> int:
        """Remove templates, forgetting a subject with its last one. Returns how many were
        present."""
        removed = 0
        with self._lock:
            for tid in template_ids:
                row = self._row.pop(tid, None)
                if row is None:
                    continue
                sid = int(self._sid[row])
                last = self._n - 1
                if row != last:  # keep rows contiguous: move the last row into the gap
                    self._emb[row] = self._emb[last]
                    self._tid[row] = self._tid[last]
                    self._sid[row] = self._sid[last]
                    self._row[int(self._tid[row])] = row
                self._n = last
                members = self._members[sid]
                members.discard(tid)
                if not members:
                    del self._members[sid]
                    del self._by_name[self._names.pop(sid)]
                removed += 1
        return removed

    def template_ids(self) -> set[int]:
        with self._lock:
            return set(self._row)

    def digest(self) -> str:
        """SHA-256 of the sorted template ids (int64 little-endian): equal for equal sets."""
        ids = np.sort(np.fromiter(self.template_ids(), dtype="<i8"))
        return hashlib.sha256(ids.tobytes()).hexdigest()

    def subject_counts(self) -> dict[str, int]:
        """Templates per subject name."""
        with self._lock:
            return {self._names[sid]: len(tids) for sid, tids in self._members.items()}

    def verify(self, name: str, probe: np.ndarray) -> float | None:
        """Best cosine similarity of ``probe`` with the subject's templates, or None when
        the index holds none of them."""
        with self._lock:
            sid = self._by_name.get(name)
            if sid is None:
                return None
            rows = [self._row[t] for t in self._members[sid]]
            return float((self._emb[rows] @ probe).max())

    def search(self, probe: np.ndarray, k: int) -> list[Match]:
        """The ``k`` best subjects for ``probe`` ``(dim,)``, best first."""
        with self._lock:
            scores = self._emb[: self._n] @ np.asarray(probe, dtype=np.float32)
            best = top_k_rows(scores, self._sid[: self._n], k)
            return [Match(sid, self._names[sid], float(scores[row])) for row, sid in best]
