"""Approximate against exact search at a million templates and more: the server's own
index (``EmbeddingIndex`` over ``IVFVectors``) measured against exact search on the same
synthetic gallery in the same run.

Galleries: ``subjects`` random centres, each with ``per_subject`` templates that are noisy
views of it; probes are further noisy views of random subjects (mated probes, at a cosine
of about 0.6 with their subject's templates, as genuine pairs of real faces are). Centres
are isotropic (``spectrum=0``, the hard case for any index that partitions space) or drawn
with a power-law spectrum (``spectrum=1``: variance of component ``i`` proportional to
``1/i``; embeddings of real faces are far from isotropic).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from faceobfuscator.research.bench.timing import latency_summary
from faceobfuscator.server.ann import AnnSpec
from faceobfuscator.server.index import EmbeddingIndex, top_k_rows

__all__ = ["ann_bench", "SyntheticGallery"]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class SyntheticGallery:
    """Seeded subjects and their templates, generated in chunks (never all at once)."""

    def __init__(
        self, n: int, dim: int, *, per_subject: int = 10, spectrum: float = 0.0, seed: int = 0
    ) -> None:
        self.n, self.dim, self.per = n, dim, per_subject
        self.noise = 0.8
        self.seed = seed
        self.scale = (np.arange(1, dim + 1, dtype=np.float32) ** (-spectrum / 2)).astype(np.float32)
        self.matrix: np.ndarray | None = None

    def materialise(self, chunk: int) -> None:
        """Keep every template in memory (``n * dim * 4`` bytes) for exact search."""
        self.matrix = np.concatenate(
            [self.chunk(s, min(self.n, s + chunk)) for s in range(0, self.n, chunk)]
        )

    def _unit(self, x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def centres(self, subjects: np.ndarray) -> np.ndarray:
        """Centres of the given subject numbers (each from its own seeded draw)."""
        out = np.empty((len(subjects), self.dim), dtype=np.float32)
        for i, s in enumerate(subjects.tolist()):
            rng = np.random.default_rng((self.seed, s))
            out[i] = rng.standard_normal(self.dim, dtype=np.float32) * self.scale
        return self._unit(out)

    def views(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(centres.shape, dtype=np.float32)
        return self._unit(centres + self.noise / np.sqrt(self.dim) * noise)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Templates ``start:stop`` (template ``t`` belongs to subject ``t // per``)."""
        if self.matrix is not None:
            return self.matrix[start:stop]
        owners = np.arange(start, stop) // self.per
        centres = self.centres(np.arange(owners[0], owners[-1] + 1))[owners - owners[0]]
        return self.views(centres, np.random.default_rng((self.seed, 1 << 40, start)))

    def probes(self, q: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 1 << 41))
        subjects = rng.integers(0, max(1, self.n // self.per), q)
        return self.views(self.centres(subjects), rng)


def _exact_reference(
    gallery: SyntheticGallery, probes: np.ndarray, k: int, chunk: int
) -> list[list[int]]:
    """The exact top ``k`` subjects of each probe, scanning the gallery in chunks."""
    keep = 64  # best rows kept per probe across chunks: enough for k subjects of 10
    best_s = np.full((len(probes), keep), -np.inf, dtype=np.float32)
    best_r = np.zeros((len(probes), keep), dtype=np.int64)
    for start in range(0, gallery.n, chunk):
        stop = min(gallery.n, start + chunk)
        scores = gallery.chunk(start, stop) @ probes.T  # (rows, q)
        top = np.argpartition(-scores, keep - 1, axis=0)[:keep].T  # (q, keep)
        cand_s = np.concatenate([best_s, np.take_along_axis(scores.T, top, axis=1)], axis=1)
        cand_r = np.concatenate([best_r, top + start], axis=1)
        pick = np.argpartition(-cand_s, keep - 1, axis=1)[:, :keep]
        best_s = np.take_along_axis(cand_s, pick, axis=1)
        best_r = np.take_along_axis(cand_r, pick, axis=1)
    return [
        [owner for _, owner in top_k_rows(best_s[j], best_r[j] // gallery.per, k)]
        for j in range(len(probes))
    ]


def _latencies(search: Callable[[np.ndarray], Any], probes: np.ndarray) -> list[float]:
    search(probes[0])  # warm-up
    out = []
    for p in probes:
        t = time.perf_counter()
        search(p)
        out.append(1000 * (time.perf_counter() - t))
    return out


def _concurrent_qps(index: EmbeddingIndex, probes: np.ndarray, threads: int) -> float:
    def work(part: np.ndarray) -> None:
        for p in part:
            index.search(p, 5)

    parts = np.array_split(probes, threads)
    pool = [threading.Thread(target=work, args=(part,)) for part in parts]
    t = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return round(len(probes) / (time.perf_counter() - t), 1)


def ann_bench(
    n: int = 1_000_000,
    *,
    dim: int = 512,
    spectrum: float = 0.0,
    nprobes: tuple[int, ...] = (16, 32, 64),
    spec: AnnSpec | None = None,
    queries: int = 300,
    exact_timed: int = 40,
    k: int = 5,
    seed: int = 0,
    chunk: int = 100_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build the server's approximate index over ``n`` synthetic templates and measure
    single-probe search (p50/p99), recall of the exact best subject and of the exact top
    ``k`` for each ``nprobe``, build time and memory, against exact search."""
    say = progress or (lambda _msg: None)
    gallery = SyntheticGallery(n, dim, spectrum=spectrum, seed=seed)
    exact_too = n <= 2_000_000  # time exact search where the float32 matrix fits
    if exact_too:
        gallery.materialise(chunk)
    probes = gallery.probes(queries)
    say(f"exact top-{k} of {queries} probes over {n:,} x {dim}")
    t = time.perf_counter()
    want = _exact_reference(gallery, probes, k, chunk)
    reference_s = time.perf_counter() - t

    spec = spec or AnnSpec()
    rss0 = _rss_bytes()
    vectors = spec.build(dim, n)
    index = EmbeddingIndex(dim, vectors=vectors)
    say(f"building IVF (nlist {vectors.nlist}) over {n:,} templates")
    t = time.perf_counter()
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        ids = list(range(start, stop))
        sids = [i // gallery.per for i in ids]
        index.add(ids, sids, [f"s{s}" for s in sids], gallery.chunk(start, stop))
    build_s = time.perf_counter() - t
    rss_per_template = (_rss_bytes() - rss0) / n

    rows = []
    for nprobe in nprobes:
        vectors.nprobe = vectors._index.nprobe = min(nprobe, vectors.nlist)
        got = [index.search(p, k) for p in probes]
        top1 = np.mean([g[0].subject_id == w[0] for g, w in zip(got, want, strict=True)])
        topk = np.mean(
            [len({m.subject_id for m in g} & set(w)) / k for g, w in zip(got, want, strict=True)]
        )
        lat = latency_summary(_latencies(lambda p: index.search(p, k), probes))
        rows.append(
            {
                "nprobe": vectors.nprobe,
                "search_ms": lat,
                "recall_top1": round(float(top1), 4),
                f"recall_top{k}": round(float(topk), 4),
                "qps_1_thread": _concurrent_qps(index, probes, 1),
                "qps_4_threads": _concurrent_qps(index, probes, 4),
            }
        )
        say(f"nprobe {vectors.nprobe}: {rows[-1]}")

    exact_ms: list[float] = []
    if gallery.matrix is not None:  # what ExactVectors does: one product, a partial sort
        owners = np.arange(n) // gallery.per
        matrix = gallery.matrix
        exact_ms = _latencies(lambda p: top_k_rows(matrix @ p, owners, k), probes[:exact_timed])
    return {
        "templates": n,
        "dim": dim,
        "per_subject": gallery.per,
        "spectrum": spectrum,
        "queries": queries,
        "index": vectors.kind,
        "nlist": vectors.nlist,
        "build_s": round(build_s, 1),
        "index_bytes_per_template": round(vectors.nbytes() / n, 1),
        "process_rss_bytes_per_template": round(rss_per_template, 1),
        "exact_reference_s": round(reference_s, 1),
        "exact_search_ms": latency_summary(exact_ms) if exact_ms else None,
        "rows": rows,
        "cpus": os.cpu_count(),
    }
