"""Approximate search for large galleries: a faiss inverted-file index over 8-bit codes.

``IVFVectors`` clusters the embeddings into ``nlist`` cells (k-means, trained once on the
first ``train_size`` templates) and stores each as ``dim`` bytes (one scalar-quantised byte
per dimension) plus its 8-byte template id; a search scores the templates of the
``nprobe`` cells nearest the probe. Until ``train_size`` templates have arrived the vectors
are searched exactly, so a small gallery served with this store behaves like the exact one.

Templates are added and removed online (``add_with_ids``, ``remove_ids`` through a hash
table from id to code); searches run concurrently, as faiss allows on a read-only index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceobfuscator.server.index import EmbeddingIndex, ExactVectors, TrainedLater
from faceobfuscator.server.pqscan import PQScanVectors

__all__ = ["IVFVectors", "AnnSpec", "choose_index", "default_nlist", "INDEX_KINDS"]

#: ``auto``: exact below ``min_templates`` at start-up, ``pq`` (``server.pqscan``) from there.
INDEX_KINDS = ("auto", "exact", "ivf", "pq")


def default_nlist(n: int) -> int:
    """About ``sqrt(n)`` cells, a power of two in ``[64, 16384]``: training stays within a
    minute on two cores at a million templates, and a probe scores ``nprobe / nlist`` of
    the gallery."""
    target = math.sqrt(max(n, 1))
    return int(min(16384, max(64, 2 ** round(math.log2(target)))))


@dataclass(frozen=True)
class AnnSpec:
    """How the approximate index is built.

    Attributes:
        nlist: k-means cells; None picks :func:`default_nlist` of the gallery's size.
        nprobe: cells scored per search (more: better recall, slower).
        train_points: templates per cell used to train the cells (faiss asks >= 39).
        threads: faiss's OpenMP threads (training and adding); searches of one probe are
            single-threaded and run concurrently from the request threads.
        shortlist: rows of the ``pq`` store's code scan re-scored on float16.
        train_size: templates gathered (and searched exactly) before training; None:
            ``train_points`` per IVF cell, 20,000 for ``pq``.
    """

    nlist: int | None = None
    nprobe: int = 32
    train_points: int = 40
    threads: int | None = None
    shortlist: int = 300
    train_size: int | None = None

    def build_pq(self, dim: int, expected: int = 0) -> PQScanVectors:
        return PQScanVectors(
            dim,
            shortlist=self.shortlist,
            train_size=self.train_size or 20_000,
            threads=self.threads,
            capacity=int(1.05 * expected),
        )

    def build(self, dim: int, expected: int) -> IVFVectors:
        nlist = self.nlist or default_nlist(expected)
        return IVFVectors(
            dim,
            nlist=nlist,
            nprobe=self.nprobe,
            train_size=self.train_size or self.train_points * nlist,
            threads=self.threads,
        )


class IVFVectors(TrainedLater):
    """Unit embeddings in a faiss ``IndexIVFScalarQuantizer`` (8-bit, inner product).

    Args:
        dim: embedding size.
        nlist: number of cells.
        nprobe: cells scored per search.
        train_size: templates gathered (and searched exactly) before the cells are trained.
        threads: faiss OpenMP threads; None leaves faiss's default.
    """

    kind = "ivf-sq8"

    def __init__(
        self,
        dim: int,
        *,
        nlist: int,
        nprobe: int = 32,
        train_size: int | None = None,
        threads: int | None = None,
    ) -> None:
        import faiss  # only servers of large galleries pay for the import

        if threads is not None:
            faiss.omp_set_num_threads(threads)
        self._faiss: Any = faiss  # its stubs lack DirectMap
        self.dim = dim
        self.nlist = nlist
        self.nprobe = min(nprobe, nlist)
        self.train_size = max(train_size or 40 * nlist, nlist)
        self._staged: ExactVectors | None = ExactVectors(dim)
        self._quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            self._quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.nprobe = self.nprobe
        self._index = index

    def __len__(self) -> int:
        return len(self._staged) if self._staged is not None else int(self._index.ntotal)

    def _add_trained(self, ids: np.ndarray, emb: np.ndarray) -> None:
        self._index.add_with_ids(emb, ids)

    def train(self) -> None:
        """Train the cells on the templates gathered so far and move them into the index
        (called by ``add`` once ``train_size`` have arrived)."""
        staged = self._staged
        if staged is None:
            return
        if len(staged) < self.nlist:
            raise ValueError(f"{len(staged)} templates cannot train {self.nlist} cells")
        ids = staged.ids()
        emb = staged.vectors(ids)
        self._index.train(emb)
        self._index.set_direct_map_type(self._faiss.DirectMap.Hashtable)
        self._index.add_with_ids(emb, ids)
        self._staged = None

    def remove(self, ids: np.ndarray) -> None:
        if self._staged is not None:
            self._staged.remove(ids)
            return
        self._index.remove_ids(self._faiss.IDSelectorArray(len(ids), self._faiss.swig_ptr(ids)))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        if self._staged is not None:
            return self._staged.vectors(ids)
        return np.stack([self._index.reconstruct(int(t)) for t in ids.tolist()])

    def search(self, probe: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        if self._staged is not None:
            return self._staged.search(probe, m)
        scores, ids = self._index.search(probe.reshape(1, self.dim), m)
        found = ids[0] >= 0
        return ids[0][found], scores[0][found]

    def ids(self) -> np.ndarray:
        if self._staged is not None:
            return self._staged.ids()
        lists: Any = self._index.invlists
        parts = [
            self._faiss.rev_swig_ptr(lists.get_ids(c), lists.list_size(c)).copy()
            for c in range(self.nlist)
            if lists.list_size(c)
        ]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def nbytes(self) -> int:
        """Codes and ids in the cells, the centroids and the id -> code hash table
        (estimated at 32 bytes an entry)."""
        if self._staged is not None:
            return self._staged.nbytes()
        n = int(self._index.ntotal)
        return n * (self._index.code_size + 8 + 32) + 4 * self.nlist * self.dim


def choose_index(
    dim: int,
    n_templates: int,
    *,
    kind: str = "auto",
    min_templates: int = 50_000,
    spec: AnnSpec | None = None,
) -> EmbeddingIndex:
    """The index for a gallery of ``n_templates``: ``exact``, ``ivf``, ``pq``, or for
    ``auto`` exact below ``min_templates`` at start-up and ``pq`` from there (a gallery
    that grows past it switches at the next start).

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; known: {', '.join(INDEX_KINDS)}")
    spec = spec or AnnSpec()
    if kind == "exact" or (kind == "auto" and n_templates < min_templates):
        return EmbeddingIndex(dim)
    if kind == "ivf":
        return EmbeddingIndex(dim, vectors=spec.build(dim, n_templates))
    return EmbeddingIndex(dim, vectors=spec.build_pq(dim, n_templates))
