"""Approximate search that scores every template: 4-bit product-quantisation codes scanned
with faiss's fast-scan kernels, the best ``shortlist`` re-scored exactly on float16 copies.

Why not only an inverted file (``server.ann.IVFVectors``): embeddings of real faces are
close to isotropic (SFace on LFW: participation ratio of the covariance about 100 of 128
dimensions), so the subjects in places 2-5 of an identification, the most similar
strangers, lie in cells the probe's nearest cells rarely include; at a million templates
the inverted file found 0.45-0.90 of the exact top 5. Scoring every template on 32-byte
codes keeps each of them in the running, and re-scoring the shortlist on float16 gives
the order exact search gives (differences near 1e-4). Product quantisation: Jégou, Douze
and Schmid, "Product quantization for nearest neighbor search", TPAMI 2011; fast scan
(4-bit codes, in-register look-up tables): André, Kermarrec and Le Scouarnec, VLDB 2015,
as implemented by faiss ``IndexPQFastScan``.

Per template: ``dim / 4`` bytes of codes (one 4-bit code per 2 dimensions), ``2 * dim``
bytes of float16 and an 8-byte id (296 bytes at 128-d). Removal marks a slot dead; the
codes are repacked once an eighth of the slots are dead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faceobfuscator.server.index import ExactVectors, TrainedLater

__all__ = ["PQScanVectors"]


class PQScanVectors(TrainedLater):
    """Unit embeddings as 4-bit PQ codes (faiss ``IndexPQFastScan``, inner product) and
    float16 rows.

    Args:
        dim: embedding size (even).
        subquantizers: PQ sub-vectors, each coded in 4 bits; default ``dim // 2``.
        shortlist: rows taken from the code scan and re-scored on float16.
        train_size: templates gathered (and searched exactly) before the codebooks are
            trained.
        threads: faiss OpenMP threads; None leaves faiss's default.
        capacity: templates to reserve room for (start-up knows the gallery's size).

    Raises:
        ValueError: ``dim`` not divisible by ``subquantizers``, or a shortlist below 1.
    """

    kind = "pq4-scan+fp16"

    def __init__(
        self,
        dim: int,
        *,
        subquantizers: int | None = None,
        shortlist: int = 300,
        train_size: int = 20_000,
        threads: int | None = None,
        capacity: int = 0,
    ) -> None:
        import faiss  # only servers of large galleries pay for the import

        m = subquantizers or dim // 2
        if m < 1 or dim % m:
            raise ValueError(f"{dim} dimensions cannot be split into {m} PQ sub-vectors")
        if shortlist < 1:
            raise ValueError(f"the shortlist must hold at least one row, got {shortlist}")
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        self.dim = dim
        self.subquantizers = m
        self.shortlist = shortlist
        self.train_size = max(train_size, 64)  # 16 centroids per sub-quantiser; 39 each is best
        self._index: Any = faiss.IndexPQFastScan(dim, m, 4, faiss.METRIC_INNER_PRODUCT)
        self._staged: ExactVectors | None = ExactVectors(dim)
        self._emb = np.empty((0, dim), dtype=np.float16)
        self._tid = np.empty(0, dtype=np.int64)  # slot -> template id; -1: dead
        self._row: dict[int, int] = {}
        self._used = 0
        self._dead = 0
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._staged) if self._staged is not None else len(self._row)

    def _reserve(self, n: int) -> None:
        if n <= self._emb.shape[0]:
            return
        cap = max(n, 2 * self._emb.shape[0], 1024, self._capacity)
        emb = np.empty((cap, self.dim), dtype=np.float16)
        emb[: self._used] = self._emb[: self._used]
        tid = np.full(cap, -1, dtype=np.int64)
        tid[: self._used] = self._tid[: self._used]
        self._emb, self._tid = emb, tid

    def _add_trained(self, ids: np.ndarray, emb: np.ndarray) -> None:
        n, start = len(ids), self._used
        self._reserve(start + n)
        self._emb[start : start + n] = emb
        self._tid[start : start + n] = ids
        self._row.update(zip(ids.tolist(), range(start, start + n), strict=True))
        self._index.add(np.ascontiguousarray(emb, dtype=np.float32))  # labels = slots
        self._used += n

    def train(self) -> None:
        """Train the codebooks on the templates gathered so far and code them (called by
        ``add`` once ``train_size`` have arrived)."""
        staged = self._staged
        if staged is None:
            return
        ids = staged.ids()
        emb = staged.vectors(ids)
        self._index.train(emb)
        self._staged = None
        self._add_trained(ids, emb)

    def remove(self, ids: np.ndarray) -> None:
        if self._staged is not None:
            self._staged.remove(ids)
            return
        for tid in ids.tolist():
            self._tid[self._row.pop(tid)] = -1
        self._dead += len(ids)
        if self._dead > max(1024, self._used // 8):
            self.compact()

    def compact(self) -> None:
        """Drop dead slots: keep the live rows in order and code them again."""
        live = self._tid[: self._used] >= 0
        emb, tid = self._emb[: self._used][live], self._tid[: self._used][live]
        self._index.reset()  # the codebooks stay trained
        self._used = self._dead = 0
        self._row = {}
        for s in range(0, len(tid), 65536):
            self._add_trained(tid[s : s + 65536], emb[s : s + 65536].astype(np.float32))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        if self._staged is not None:
            return self._staged.vectors(ids)
        return self._emb[[self._row[t] for t in ids.tolist()]].astype(np.float32)

    def search(self, probe: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        if self._staged is not None:
            return self._staged.search(probe, m)
        want = max(m, self.shortlist)
        fetch = min(self._used, want + min(self._dead, want))
        query = probe.reshape(1, self.dim)
        while True:
            slots = self._index.search(query, fetch)[1][0]
            slots = slots[slots >= 0]
            slots = slots[self._tid[slots] >= 0]
            if len(slots) >= want or fetch >= self._used:
                break
            fetch = min(self._used, 4 * fetch)  # dead rows crowded the shortlist
        scores = self._emb[slots].astype(np.float32) @ probe
        order = np.argsort(-scores, kind="stable")[:m]
        return self._tid[slots[order]], scores[order]

    def ids(self) -> np.ndarray:
        if self._staged is not None:
            return self._staged.ids()
        tid = self._tid[: self._used]
        return tid[tid >= 0].copy()

    def nbytes(self) -> int:
        """Codes, float16 rows and ids of every slot (dead ones until repacked); the id ->
        slot table is Python's and counted in the process's memory, not here."""
        if self._staged is not None:
            return self._staged.nbytes()
        return self._used * (self.subquantizers // 2 + 2 * self.dim + 8)
