"""Face verification: embeddings of protected faces, threshold calibration and the
standard k-fold protocol.

Scores are cosine similarities; a pair is accepted as the same person when its score is
``>= threshold``. In the k-fold protocol the threshold that maximises accuracy on the
other folds is applied to each fold in turn (insightface ``arcface_torch`` style); the
standard deviation over folds is the population one (``ddof=0``), as there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.recognition.schemes import Scheme

__all__ = [
    "best_threshold",
    "accuracy_at",
    "kfold_accuracy",
    "threshold_at_far",
    "tar_at_far",
    "contiguous_folds",
    "embed_faces",
    "pair_scores",
    "VerificationResult",
    "evaluate_pairs",
]


def _check_scores(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if s.ndim != 1 or s.shape != y.shape or s.size == 0:
        raise InputError(f"expected equal-length 1-D scores and labels, got {s.shape}, {y.shape}")
    if not np.isfinite(s).all():
        raise InputError("scores hold NaN or infinite values")
    return s, y


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided right when accepting ``score >= threshold``."""
    s, y = _check_scores(scores, same)
    return float(np.mean((s >= threshold) == y))


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold of highest accuracy: a midpoint between consecutive distinct scores
    (or just outside their range); ties go to the lowest such threshold."""
    s, y = _check_scores(scores, same)
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    # cut i accepts s[i:]: correct = same pairs at or after i + different pairs before i
    same_after = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    diff_before = np.concatenate([[0], np.cumsum(~y)])
    correct = same_after + diff_before
    valid = np.ones(s.size + 1, dtype=bool)
    valid[1:-1] = s[1:] > s[:-1]  # a cut between equal scores cannot be made
    i = int(np.argmax(np.where(valid, correct, -1)))
    if i == 0:
        return float(s[0] - 1.0)
    if i == s.size:
        return float(s[-1] + 1.0)
    return float((s[i - 1] + s[i]) / 2)


def kfold_accuracy(
    scores: np.ndarray, same: np.ndarray, folds: np.ndarray
) -> tuple[dict[int, float], dict[int, float]]:
    """Per-fold accuracy with the threshold chosen on the other folds; returns
    ``(accuracy by fold, threshold by fold)``."""
    s, y = _check_scores(scores, same)
    f = np.asarray(folds)
    ids = sorted(int(v) for v in np.unique(f))
    if len(ids) < 2:
        raise InputError(f"k-fold evaluation needs at least two folds, got {ids}")
    acc, thr = {}, {}
    for k in ids:
        test = f == k
        thr[k] = best_threshold(s[~test], y[~test])
        acc[k] = accuracy_at(s[test], y[test], thr[k])
    return acc, thr


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The lowest threshold at which at most ``floor(far * n)`` of the ``n`` impostor
    scores are accepted (``score >= threshold``)."""
    s = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if s.size == 0 or not 0 <= far < 1:
        raise InputError(f"need impostor scores and 0 <= far < 1 (got {s.size} scores, {far})")
    k = math.floor(far * s.size + 1e-9)
    return float(np.nextafter(s[k], np.inf))


def tar_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> dict[str, float]:
    """True accept rate at the :func:`threshold_at_far` of the impostor pairs, with the
    threshold, the FAR reached and the number of impostor pairs (FAR's resolution)."""
    s, y = _check_scores(scores, same)
    if y.all() or not y.any():
        raise InputError("TAR at FAR needs both genuine and impostor pairs")
    t = threshold_at_far(s[~y], far)
    return {
        "tar": float(np.mean(s[y] >= t)),
        "threshold": t,
        "far": float(np.mean(s[~y] >= t)),
        "n_impostor": int((~y).sum()),
    }


def contiguous_folds(n_pairs: int, k: int = 10) -> np.ndarray:
    """Fold numbers 1..k of ``n_pairs`` pairs cut into contiguous near-equal runs (the
    insightface ``.bin`` convention, as ``KFold(k, shuffle=False)``)."""
    out = np.empty(n_pairs, dtype=np.int64)
    for fold, idx in enumerate(np.array_split(np.arange(n_pairs), k), start=1):
        out[idx] = fold
    return out


Embedder = Callable[[torch.Tensor], torch.Tensor]


def embed_faces(
    embed: Embedder,
    scheme: Scheme,
    faces: torch.Tensor,
    *,
    generator: torch.Generator,
    flip: bool = True,
    recovery: bool = True,
    batch_size: int = 128,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of uint8 faces ``(M, S, S, 3)`` as the scheme's client and server
    compute them, each view with its own fresh protection.

    Args:
        embed: network inputs ``(n, C, S, S)`` -> L2-normalised embeddings ``(n, D)``.
        generator: random source of the protection, on the device the faces are sent to.
        flip: also embed the mirror image and sum (the standard verification protocol).
        recovery: apply the server's recovery; ``False`` feeds what was sent straight to
            the network (the paper's Table 5 ablation).
        progress: show a progress bar (on stderr).

    Returns:
        ``(combined, single)``: the normalised sum over views ``(M, D)`` and the embedding
        of the unflipped view alone (what a deployed server compares).
    """
    device = generator.device
    from tqdm import tqdm

    combined, single = [], []
    starts = range(0, faces.shape[0], batch_size)
    for start in tqdm(starts, desc="embedding", unit="batch", disable=not progress, leave=False):
        x = faces[start : start + batch_size].to(device)
        views = [x, x.flip(2)] if flip else [x]
        embs = []
        for view in views:
            sent = scheme.client_features(view, generator=generator)
            embs.append(embed(scheme.server_input(sent) if recovery else sent).float().cpu())
        single.append(embs[0])
        combined.append(torch.nn.functional.normalize(sum(embs), dim=1))  # type: ignore[arg-type]
    return torch.cat(combined), torch.cat(single)


def pair_scores(embeddings: torch.Tensor, pairs: np.ndarray) -> np.ndarray:
    """Cosine of each ``(i, j)`` row of ``pairs`` for normalised embeddings."""
    p = torch.as_tensor(np.asarray(pairs, dtype=np.int64))
    return (embeddings[p[:, 0]] * embeddings[p[:, 1]]).sum(1).double().numpy()


@dataclass
class VerificationResult:
    """What ``faceobf eval verify`` reports (accuracies are fractions)."""

    benchmark: str
    folds: list[int]
    n_pairs: int
    missing_pairs: int
    accuracy_mean: float
    accuracy_std: float
    fold_accuracy: dict[int, float]
    fold_threshold: dict[int, float]
    tar_at_far: dict[str, float]
    far_target: float
    recovery: bool
    at_model_threshold: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fold_accuracy"] = {str(k): v for k, v in self.fold_accuracy.items()}
        d["fold_threshold"] = {str(k): v for k, v in self.fold_threshold.items()}
        return d


def evaluate_pairs(
    benchmark: str,
    scores: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    *,
    far: float = 1e-3,
    single_scores: np.ndarray | None = None,
    model_threshold: float | None = None,
    missing_pairs: int = 0,
    recovery: bool = True,
) -> VerificationResult:
    """The k-fold accuracy and TAR at FAR of scored pairs; with ``single_scores`` and a
    ``model_threshold``, also the accept rates of the model's calibrated threshold."""
    acc, thr = kfold_accuracy(scores, same, folds)
    values = np.array(list(acc.values()))
    at_model = None
    if model_threshold is not None and single_scores is not None:
        s, y = _check_scores(single_scores, same)
        at_model = {
            "threshold": model_threshold,
            "tar": float(np.mean(s[y] >= model_threshold)),
            "far": float(np.mean(s[~y] >= model_threshold)),
            "accuracy": accuracy_at(s, y, model_threshold),
            "views": "single (unflipped), as a deployed server compares",
        }
    return VerificationResult(
        benchmark=benchmark,
        folds=sorted(acc),
        n_pairs=int(len(scores)),
        missing_pairs=missing_pairs,
        accuracy_mean=float(values.mean()),
        accuracy_std=float(values.std()),
        fold_accuracy=acc,
        fold_threshold=thr,
        tar_at_far=tar_at_far(scores, same, far),
        far_target=far,
        recovery=recovery,
        at_model_threshold=at_model,
    )
