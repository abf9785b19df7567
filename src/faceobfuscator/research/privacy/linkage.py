"""Linkage attacks: from a leaked payload to *who* the person is.

The attacker runs the client (black box) on public faces, trains a network from what leaks
to the embedding of an independent face recognizer (:mod:`.linkage_train`), and searches
each victim's predicted embedding in a gallery of real photos (:func:`search`). This module
holds the recognizers' embedding spaces and the search measures; :mod:`.linkage_run` runs
the whole evaluation (``faceobf privacy linkage CONFIG``).

Recognizers (:data:`RECOGNIZER_THRESHOLDS`):

- ``dlib``: dlib's ResNet descriptor (``face-recognition-models``) on its own chip
  (:class:`~faceobfuscator.research.privacy.identity.DlibRecognizer`); same person when the
  Euclidean distance of the raw descriptors is below 0.6 (dlib's documented threshold).
  Scores are negative distances; the attacker's unit-length prediction is scaled to the
  mean descriptor norm of its own training faces (public knowledge).
- ``sface``: OpenCV Zoo's SFace; same person at cosine >= 0.363 (the threshold of OpenCV's
  ``FaceRecognizerSF`` sample). Our server networks are initialised from SFace and
  distilled to it, so an SFace attacker is not independent of the server network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import InputError
from faceobfuscator.research.privacy.metrics import mean_interval

__all__ = [
    "RECOGNIZER_THRESHOLDS",
    "Space",
    "fmr_threshold",
    "recognizer_embeddings",
    "search",
    "link_summary",
]

#: each recognizer's own same-person threshold, in its score units (see the docstring)
RECOGNIZER_THRESHOLDS = {"dlib": -0.6, "sface": 0.363}


@dataclass(frozen=True)
class Space:
    """A recognizer's embedding space: how two sets of embeddings are scored.

    Attributes:
        name: ``dlib`` or ``sface``.
        scale: the norm that unit-length predictions are given before scoring (dlib's
            raw descriptors are not unit length; 1 for SFace).
    """

    name: str
    scale: float = 1.0

    @property
    def threshold(self) -> float:
        """The recognizer's own same-person threshold, as a score."""
        return RECOGNIZER_THRESHOLDS[self.name]

    def scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """All scores ``(Na, Nb)`` float64 between embeddings ``a (Na, D)`` and ``b (Nb, D)``:
        the negative Euclidean distance for dlib, the cosine for SFace. Non-finite rows of
        ``a`` score ``-inf``."""
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if self.name == "dlib":
            sq = (a64**2).sum(1)[:, None] + (b64**2).sum(1)[None] - 2 * a64 @ b64.T
            s = -np.sqrt(np.clip(sq, 0, None))
        else:
            na = np.linalg.norm(a64, axis=1, keepdims=True).clip(1e-12)
            nb = np.linalg.norm(b64, axis=1, keepdims=True).clip(1e-12)
            s = (a64 / na) @ (b64 / nb).T
        return np.where(np.isfinite(s), s, -np.inf)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Predicted unit-length embeddings as this space's embeddings."""
        return np.asarray(unit, np.float64) * self.scale


def recognizer_embeddings(
    faces: np.ndarray,
    name: str,
    *,
    cache_dir: str | Path | None,
    chip_matrix: Any = None,
    progress: bool = False,
) -> np.ndarray:
    """The recognizer's embeddings ``(N, 128)`` float32 of uint8 faces ``(N, 112, 112, 3)``:
    SFace's L2-normalised embedding (cached as the distillation teacher's), or dlib's raw
    descriptor (cached in ``<cache_dir>/dlib-raw-<chip map digest>``) with ``chip_matrix``
    (2x3, crop -> dlib chip; default the recognizer's). Each face is computed once per cache.

    Raises:
        InputError: an unknown recognizer or faces of the wrong shape.
    """
    from faceobfuscator.research.training.teachers import (
        EmbeddingStore,
        face_keys,
        get_teacher,
        teacher_embeddings,
    )

    if name == "sface":
        return teacher_embeddings(
            faces, get_teacher("sface"), cache_dir=cache_dir, progress=progress
        )
    if name != "dlib":
        raise InputError(f"unknown recognizer {name!r}; known: {sorted(RECOGNIZER_THRESHOLDS)}")
    from faceobfuscator.protocol.config import ProtocolConfig
    from faceobfuscator.research.privacy.identity import DlibRecognizer

    keys = face_keys(faces)
    out = np.empty((len(faces), 128), np.float32)
    todo = np.arange(len(faces))
    store = None
    rec = DlibRecognizer(ProtocolConfig(), matrix=chip_matrix)
    if cache_dir is not None:  # the chip map decides the descriptor: it names the cache
        chip = rec.chip_digest()[:12]
        store = EmbeddingStore(Path(cache_dir) / f"dlib-raw-{chip}", 128)
        found, rows = store.get(keys)
        out[found] = rows
        todo = np.flatnonzero(~found)
    for i in range(0, len(todo), 512):
        idx = todo[i : i + 512]
        out[idx] = rec.embed(faces[idx])
        if store is not None:
            store.add([keys[j] for j in idx], out[idx])
    return out


def fmr_threshold(nonmated: np.ndarray, fmr: float) -> float:
    """The smallest score threshold whose false-match rate on ``nonmated`` scores is at most
    ``fmr`` (a score matches when it is ``>=`` the threshold).

    Raises:
        InputError: too few non-mated scores to resolve ``fmr`` (fewer than ``10 / fmr``).
    """
    s = np.sort(np.asarray(nonmated, np.float64).reshape(-1))[::-1]
    if len(s) < 10 / fmr:
        raise InputError(f"{len(s)} non-mated scores cannot resolve FMR {fmr}; need {10 / fmr:.0f}")
    k = int(np.floor(fmr * len(s)))  # at most k scores may be >= the threshold
    return float(np.nextafter(s[k], np.inf)) if k < len(s) else float(s[-1])


def search(
    space: Space,
    probes: np.ndarray,
    probe_keys: list[str],
    gallery: np.ndarray,
    gallery_keys: list[str],
) -> dict[str, np.ndarray]:
    """Search each probe embedding in the gallery.

    Returns per probe: ``mate_score`` (the best score of a gallery photo of the same
    person) and ``rank`` (1 + how many photos of other people score higher).

    Raises:
        InputError: a probe whose person is not in the gallery.
    """
    scores = space.scores(probes, gallery)
    gk = np.asarray(gallery_keys)
    mate = gk[None, :] == np.asarray(probe_keys)[:, None]
    if not mate.any(axis=1).all():
        raise InputError("every probe's person must be in the gallery")
    mate_score = np.where(mate, scores, -np.inf).max(axis=1)
    higher = ((scores > mate_score[:, None]) & ~mate).sum(axis=1)
    return {"mate_score": mate_score, "rank": higher + 1}


def link_summary(found: dict[str, np.ndarray], thresholds: dict[str, float]) -> dict[str, Any]:
    """Shares with Wilson 95% intervals: linked at each named threshold (the mate scores
    at or above it), rank-1 and rank-10 identification."""
    out: dict[str, Any] = {}
    for name, t in thresholds.items():
        out[f"linked_{name}"] = _share(found["mate_score"] >= t)
    out["rank1"] = _share(found["rank"] <= 1)
    out["rank10"] = _share(found["rank"] <= 10)
    return out


def _share(hits: np.ndarray) -> dict[str, Any]:
    return mean_interval(np.asarray(hits, np.float64), share=True).to_dict()
