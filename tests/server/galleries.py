"""Seeded synthetic galleries for the index tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from faceobfuscator.server.index import EmbeddingIndex


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def gallery(
    rng: np.random.Generator, subjects: int, per: int, dim: int, noise: float = 0.8
) -> tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Subjects as random centres of a power-law spectrum, templates and probes as noisy
    views of them (mated probes at a cosine of about 0.65 with their subject's templates,
    as with real faces). Returns templates, centres and the view maker."""
    spectrum = np.arange(1, dim + 1) ** -0.5
    centres = unit(rng.standard_normal((subjects, dim)) * spectrum)

    def views(c: np.ndarray) -> np.ndarray:
        return unit(c + noise / np.sqrt(dim) * rng.standard_normal(c.shape))

    return views(np.repeat(centres, per, axis=0)), centres, views


def fill(index: EmbeddingIndex, emb: np.ndarray, per: int, first_id: int = 1) -> list[int]:
    """Add ``emb`` as templates ``first_id...`` of subjects ``(id - 1) // per``."""
    ids = list(range(first_id, first_id + len(emb)))
    sids = [(i - 1) // per for i in ids]
    index.add(ids, sids, [f"s{s}" for s in sids], emb)
    return ids
