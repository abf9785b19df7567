"""Approximate against exact search at a million templates and more: the server's own
index (``EmbeddingIndex`` over ``PQScanVectors`` or ``IVFVectors``) measured against exact
search on the same synthetic gallery in the same run.

Galleries: ``subjects`` centres, each with ``per_subject`` templates that are noisy views
of it; probes are further views of random gallery subjects (mated probes). Three kinds:

- ``fitted`` (the realistic one): the two-covariance model of face embeddings (as in
  PLDA: Ioffe, ECCV 2006; Prince and Elder, ICCV 2007) fitted to real embeddings with
  identities: centre ``mu + B z``, template ``unit(centre + W z')`` with ``B B^T`` the
  between-subject and ``W W^T`` the pooled within-subject covariance. Fitted to SFace on
  LFW it reproduces the real genuine (0.66) and impostor (0.09 +- 0.09) cosines, which
  the JSON reports for the real and the synthetic gallery side by side.
- ``spectrum=0``: isotropic unit centres (the hard case for any index that partitions
  space), templates at a cosine of about 0.6 with each other.
- ``spectrum=1``: the same with a power-law spectrum (variance of component ``i``
  proportional to ``1/i``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.research.bench.timing import latency_summary
from faceobfuscator.server.ann import AnnSpec
from faceobfuscator.server.index import EmbeddingIndex, top_k_rows

__all__ = ["ann_bench", "SyntheticGallery", "FaceModel", "fit_face_model", "load_face_model"]


@dataclass(frozen=True)
class FaceModel:
    """The two-covariance model of embeddings: ``mean`` ``(dim,)``, ``between`` and
    ``within`` ``(dim, dim)`` square roots of the covariances, and what it was fitted to
    (``stats``: genuine and impostor cosines of the real embeddings)."""

    mean: np.ndarray
    between: np.ndarray
    within: np.ndarray
    stats: dict[str, Any]


def _cosine_stats(emb: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict:
    """Mean genuine cosine (first two of each subject) and impostor mean and std
    (20,000 random pairs) of unit embeddings."""
    first: dict[Any, int] = {}
    pairs = []
    for i, lab in enumerate(labels.tolist()):
        if lab in first and first[lab] >= 0:
            pairs.append((first[lab], i))
            first[lab] = -1
        first.setdefault(lab, i)
    g = np.array([emb[a] @ emb[b] for a, b in pairs])
    i, j = rng.integers(0, len(emb), (2, 20_000))
    imp = (emb[i] * emb[j]).sum(1)[labels[i] != labels[j]]
    return {
        "genuine_cos_mean": round(float(g.mean()), 3),
        "impostor_cos_mean": round(float(imp.mean()), 3),
        "impostor_cos_std": round(float(imp.std()), 3),
    }


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))).astype(np.float32)


def fit_face_model(emb: np.ndarray, labels: np.ndarray, *, source: str = "") -> FaceModel:
    """Fit :class:`FaceModel` to embeddings ``(N, dim)`` with subject ``labels`` ``(N,)``
    (at least two subjects with two or more images). The covariance of subject means is
    ``B + E[1/n] W``, so ``B`` is it less that share of ``W``.

    Raises:
        ValueError: shapes disagree, or too few subjects have two images.
    """
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or len(labels) != len(emb):
        raise ValueError(f"embeddings {emb.shape} and {len(labels)} labels do not pair up")
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    multi = counts >= 2
    if multi.sum() < 2:
        raise ValueError("fitting needs at least two subjects with two or more embeddings")
    sums = np.zeros((len(counts), emb.shape[1]))
    np.add.at(sums, inv, emb)
    means = sums / counts[:, None]
    rows = multi[inv]
    resid = emb[rows] - means[inv[rows]]
    within = resid.T @ resid / (rows.sum() - multi.sum())
    between = np.cov(means[multi].T) - np.mean(1 / counts[multi]) * within
    stats = _cosine_stats(emb.astype(np.float32), inv, np.random.default_rng(0))
    eig = np.linalg.eigvalsh(np.cov(emb.T))
    stats |= {
        "source": source,
        "embeddings": len(emb),
        "subjects": len(counts),
        "participation_ratio": round(float(eig.sum() ** 2 / (eig**2).sum()), 1),
    }
    return FaceModel(emb.mean(0).astype(np.float32), _sqrt_psd(between), _sqrt_psd(within), stats)


def load_face_model(embeddings: str | Path, pack: str | Path) -> FaceModel:
    """:func:`fit_face_model` on an ``.npy`` of embeddings and the pack (``.npz`` with
    ``paths``, one per row, each ``.../<subject>/<image>``) they were computed from, e.g.
    ``cache/yunet/lfw.sface.npy`` and ``cache/yunet/lfw.npz``.

    Raises:
        ValueError: the two files hold different numbers of rows.
    """
    emb = np.load(embeddings)
    with np.load(pack) as z:
        paths = z["paths"]
    if len(paths) != len(emb):
        raise ValueError(f"{embeddings} has {len(emb)} rows, {pack} {len(paths)} paths")
    labels = np.array([Path(str(p)).parent.name for p in paths])
    return fit_face_model(emb, labels, source=f"{embeddings} (subjects from {pack})")


def load_face_model_from_pack(pack: str | Path, teacher: str = "sface") -> FaceModel:
    """:func:`fit_face_model` on a training pack made with ``faceobf data pack --teacher
    NAME`` (its ``teacher_<NAME>`` embeddings and ``labels``; unlabelled rows, label -1,
    are left out), e.g. ``cache/experiments/train-pack-labelled.npz``.

    Raises:
        ValueError: the pack has no embeddings of ``teacher``.
    """
    with np.load(pack) as z:
        key = f"teacher_{teacher}"
        if key not in z.files:
            raise ValueError(f"{pack} holds no {teacher} embeddings (made without --teacher)")
        emb, labels = z[key], z["labels"]
    keep = labels >= 0
    return fit_face_model(
        emb[keep].astype(np.float32), labels[keep], source=f"{teacher} embeddings in {pack}"
    )


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class SyntheticGallery:
    """Seeded subjects and their templates, generated in chunks (never all at once).

    Args:
        n: templates (template ``t`` belongs to subject ``t // per_subject``).
        dim: embedding size.
        per_subject: templates per subject.
        spectrum: without ``model``, the power of the centres' spectrum (0: isotropic).
        model: a fitted :class:`FaceModel` (its size must be ``dim``).
        seed: everything is drawn from seeded generators.
    """

    def __init__(
        self,
        n: int,
        dim: int,
        *,
        per_subject: int = 10,
        spectrum: float = 0.0,
        model: FaceModel | None = None,
        seed: int = 0,
    ) -> None:
        if model is not None and model.mean.shape != (dim,):
            raise ValueError(f"a {model.mean.shape[0]}-d face model for a {dim}-d gallery")
        self.n, self.dim, self.per = n, dim, per_subject
        self.noise = 0.8
        self.seed = seed
        self.model = model
        self.scale = (np.arange(1, dim + 1, dtype=np.float32) ** (-spectrum / 2)).astype(np.float32)
        self.matrix: np.ndarray | None = None

    def materialise(self, chunk: int) -> None:
        """Keep every template in memory (``n * dim * 4`` bytes) for exact search."""
        self.matrix = np.concatenate(
            [self.chunk(s, min(self.n, s + chunk)) for s in range(0, self.n, chunk)]
        )

    def _unit(self, x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def centres(self, subjects: np.ndarray) -> np.ndarray:
        """Centres of the given subject numbers (each from its own seeded draw)."""
        z = np.empty((len(subjects), self.dim), dtype=np.float32)
        for i, s in enumerate(subjects.tolist()):
            z[i] = np.random.default_rng((self.seed, s)).standard_normal(self.dim, np.float32)
        if self.model is not None:
            return self.model.mean + z @ self.model.between.T
        return self._unit(z * self.scale)

    def views(self, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal(centres.shape, dtype=np.float32)
        if self.model is not None:
            return self._unit(centres + noise @ self.model.within.T)
        return self._unit(centres + self.noise / np.sqrt(self.dim) * noise)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Templates ``start:stop``."""
        if self.matrix is not None:
            return self.matrix[start:stop]
        owners = np.arange(start, stop) // self.per
        centres = self.centres(np.arange(owners[0], owners[-1] + 1))[owners - owners[0]]
        return self.views(centres, np.random.default_rng((self.seed, 1 << 40, start)))

    def probes(self, q: int) -> np.ndarray:
        """``q`` mated probes: new views of random gallery subjects."""
        rng = np.random.default_rng((self.seed, 1 << 41))
        subjects = rng.integers(0, max(1, self.n // self.per), q)
        return self.views(self.centres(subjects), rng)

    def stats(self) -> dict[str, Any]:
        """Genuine and impostor cosines of the first 20,000 templates."""
        m = min(self.n, 20_000)
        emb = self.chunk(0, m)
        return _cosine_stats(emb, np.arange(m) // self.per, np.random.default_rng(1))


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


def _latencies(
    search: Callable[[np.ndarray], Any], probes: np.ndarray, cpu: list[float] | None = None
) -> list[float]:
    """Wall-clock ms of each search; ``cpu`` receives the thread's CPU ms of each (on a
    shared machine the difference is time spent waiting for a core)."""
    search(probes[0])  # warm-up
    out = []
    for p in probes:
        t, c = time.perf_counter(), time.thread_time()
        search(p)
        out.append(1000 * (time.perf_counter() - t))
        if cpu is not None:
            cpu.append(1000 * (time.thread_time() - c))
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


def _set_knob(vectors: Any, kind: str, value: int) -> int:
    """Set nprobe (``ivf``) or the shortlist (``pq``); returns what was set."""
    if kind == "ivf":
        vectors.nprobe = vectors._index.nprobe = min(value, vectors.nlist)
        return int(vectors.nprobe)
    vectors.shortlist = value
    return value


def ann_bench(
    n: int = 1_000_000,
    *,
    dim: int = 128,
    kind: str = "pq",
    knobs: tuple[int, ...] = (100, 300, 1000),
    spectrum: float = 0.0,
    model: FaceModel | None = None,
    per_subject: int = 5,
    spec: AnnSpec | None = None,
    queries: int = 300,
    exact_timed: int = 40,
    k: int = 5,
    seed: int = 0,
    chunk: int = 100_000,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build the server's approximate index (``kind`` ``pq`` or ``ivf``) over ``n``
    synthetic templates and measure single-probe search (p50/p99), recall of the exact
    best subject and of the exact top ``k`` subjects for each knob (the ``pq`` shortlist
    or the ``ivf`` nprobe), build time and memory, against exact search on the same
    gallery (timed where its float32 matrix fits: up to 2,000,000 templates)."""
    say = progress or (lambda _msg: None)
    gallery = SyntheticGallery(
        n, dim, per_subject=per_subject, spectrum=spectrum, model=model, seed=seed
    )
    exact_too = n <= 2_000_000
    if exact_too:
        gallery.materialise(chunk)
    probes = gallery.probes(queries)
    say(f"exact top-{k} of {queries} probes over {n:,} x {dim}")
    t = time.perf_counter()
    want = _exact_reference(gallery, probes, k, chunk)
    reference_s = time.perf_counter() - t

    spec = spec or AnnSpec()
    rss0 = _rss_bytes()
    vectors: Any = spec.build(dim, n) if kind == "ivf" else spec.build_pq(dim, n)
    index = EmbeddingIndex(dim, vectors=vectors)
    say(f"building {vectors.kind} over {n:,} templates")
    t = time.perf_counter()
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        ids = list(range(start, stop))
        sids = [i // gallery.per for i in ids]
        index.add(ids, sids, [f"s{s}" for s in sids], gallery.chunk(start, stop))
    build_s = time.perf_counter() - t
    rss_per_template = (_rss_bytes() - rss0) / n

    rows = []
    for knob in knobs:
        value = _set_knob(vectors, kind, knob)
        got = [index.search(p, k) for p in probes]
        top1 = np.mean([g[0].subject_id == w[0] for g, w in zip(got, want, strict=True)])
        topk = np.mean(
            [len({m.subject_id for m in g} & set(w)) / k for g, w in zip(got, want, strict=True)]
        )
        cpu: list[float] = []
        lat = latency_summary(_latencies(lambda p: index.search(p, k), probes, cpu))
        rows.append(
            {
                "nprobe" if kind == "ivf" else "shortlist": value,
                "search_ms": lat,
                "search_cpu_ms": latency_summary(cpu),
                "recall_top1": round(float(top1), 4),
                f"recall_top{k}": round(float(topk), 4),
                "qps_1_thread": _concurrent_qps(index, probes, 1),
                "qps_4_threads": _concurrent_qps(index, probes, 4),
            }
        )
        say(f"{kind} {value}: {rows[-1]}")

    exact_ms: list[float] = []
    if gallery.matrix is not None:  # what ExactVectors does: one product, a partial sort
        owners = np.arange(n) // gallery.per
        matrix = gallery.matrix
        exact_ms = _latencies(lambda p: top_k_rows(matrix @ p, owners, k), probes[:exact_timed])
    return {
        "templates": n,
        "dim": dim,
        "per_subject": gallery.per,
        "gallery": "fitted" if model is not None else f"spectrum {spectrum:g}",
        "real_stats": model.stats if model is not None else None,
        "synthetic_stats": gallery.stats(),
        "queries": queries,
        "index": vectors.kind,
        "nlist": getattr(vectors, "nlist", None),
        "build_s": round(build_s, 1),
        "index_bytes_per_template": round(vectors.nbytes() / n, 1),
        "process_rss_bytes_per_template": round(rss_per_template, 1),
        "exact_reference_s": round(reference_s, 1),
        "exact_search_ms": latency_summary(exact_ms) if exact_ms else None,
        "rows": rows,
        "cpus": os.cpu_count(),
    }
