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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError
from .schemes import Scheme

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
    "Benchmark",
    "load_benchmark",
    "run_verification",
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of uint8 faces ``(M, S, S, 3)`` as the scheme's client and server
    compute them, each view with its own fresh protection.

    Args:
        embed: network inputs ``(n, C, S, S)`` -> L2-normalised embeddings ``(n, D)``.
        generator: random source of the protection, on the device the faces are sent to.
        flip: also embed the mirror image and sum (the standard verification protocol).
        recovery: apply the server's recovery; ``False`` feeds what was sent straight to
            the network (the paper's Table 5 ablation).

    Returns:
        ``(combined, single)``: the normalised sum over views ``(M, D)`` and the embedding
        of the unflipped view alone (what a deployed server compares).
    """
    device = generator.device
    combined, single = [], []
    for start in range(0, faces.shape[0], batch_size):
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


@dataclass
class Benchmark:
    """Verification pairs over a set of aligned faces.

    Attributes:
        name: ``lfw``, ``cfp-ff``, ``cfp-fp`` or ``bin:PATH``.
        faces: uint8 ``(M, S, S, 3)``, every image used by a pair once.
        pairs: int64 ``(P, 2)`` indices into ``faces``.
        same: bool ``(P,)``.
        folds: int ``(P,)`` fold numbers.
        missing_pairs: pairs of the requested folds left out because a crop is missing,
            by fold.
    """

    name: str
    faces: torch.Tensor
    pairs: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    missing_pairs: dict[int, int]


def load_benchmark(
    name: str,
    *,
    folds: tuple[int, ...] | None = None,
    datasets_root: str | Path = "../shared/datasets",
    aligned_root: str | Path = "cache/aligned",
    image_size: int = 112,
) -> Benchmark:
    """Pairs of ``lfw``/``cfp-ff``/``cfp-fp`` (folds 6-10 unless given) from the aligned
    cache, or of an insightface pack ``bin:PATH`` (folds 1-10 unless given)."""
    if name.startswith("bin:"):
        return _load_bin(name, folds or tuple(range(1, 11)), image_size)
    from .datasets import prepared_path, read_manifest
    from .split import DEFAULT_TEST_FOLDS, benchmark_pairs

    wanted = set(folds or DEFAULT_TEST_FOLDS)
    dataset = "lfw" if name == "lfw" else "cfp"
    pairs = [p for p in benchmark_pairs(name, datasets_root) if p.fold in wanted]
    if not pairs:
        raise InputError(f"{name} has no pairs in folds {sorted(wanted)}")
    aligned = Path(aligned_root) / dataset
    manifest = read_manifest(aligned)
    if not manifest:
        raise InputError(
            f"no aligned {dataset} crops at {aligned}; run `faceobf data prepare {dataset}`"
        )

    def available(rel: str) -> bool:
        entry = manifest.get(rel)
        return entry is not None and entry.outcome != "failed"

    missing = dict.fromkeys(sorted(wanted), 0)
    kept = []
    for p in pairs:
        if available(p.path_a) and available(p.path_b):
            kept.append(p)
        else:
            missing[p.fold] += 1
    index: dict[str, int] = {}
    for p in kept:
        for rel in (p.path_a, p.path_b):
            index.setdefault(rel, len(index))
    faces = np.stack([_read_png(prepared_path(aligned, rel), image_size) for rel in index])
    return Benchmark(
        name=name,
        faces=torch.from_numpy(faces),
        pairs=np.array([(index[p.path_a], index[p.path_b]) for p in kept], dtype=np.int64),
        same=np.array([p.same for p in kept], dtype=bool),
        folds=np.array([p.fold for p in kept], dtype=np.int64),
        missing_pairs=missing,
    )


def _read_png(path: Path, size: int) -> np.ndarray:
    from .formats import decode_image

    return decode_image(path.read_bytes(), size)


def _load_bin(name: str, folds: tuple[int, ...], size: int) -> Benchmark:
    from .formats import decode_image, read_bin

    images, issame = read_bin(name[4:])
    all_folds = contiguous_folds(len(issame))
    keep = np.isin(all_folds, folds)
    idx = np.flatnonzero(keep)
    faces = np.stack([decode_image(images[j], size) for i in idx for j in (2 * i, 2 * i + 1)])
    return Benchmark(
        name=name,
        faces=torch.from_numpy(faces),
        pairs=np.arange(2 * len(idx), dtype=np.int64).reshape(-1, 2),
        same=issame[keep],
        folds=all_folds[keep],
        missing_pairs=dict.fromkeys(sorted(folds), 0),
    )


def run_verification(
    model_dir: str | Path,
    benchmark: str,
    *,
    folds: tuple[int, ...] | None = None,
    recovery: bool = True,
    flip: bool = True,
    datasets_root: str | Path = "../shared/datasets",
    aligned_root: str | Path = "cache/aligned",
    device: str = "auto",
    batch_size: int = 128,
    seed: int | None = None,
    far: float = 1e-3,
) -> VerificationResult:
    """``faceobf eval verify``: load the model and benchmark, embed, score, k-fold.

    ``recovery=False`` is the paper's Table 5 ablation (only meaningful for schemes with a
    recovery step). ``seed`` fixes the protection draws (default: a secure random seed,
    reported in the result)."""
    import secrets

    from .modeldir import load_model

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_dir, device=device)
    if not recovery and not model.scheme.has_recovery:
        raise InputError(f"scheme {model.scheme.name!r} has no recovery step to leave out")
    bench = load_benchmark(
        benchmark,
        folds=folds,
        datasets_root=datasets_root,
        aligned_root=aligned_root,
        image_size=model.protocol.image_size,
    )
    seed = secrets.randbits(63) if seed is None else seed
    generator = torch.Generator(device=device).manual_seed(seed)
    combined, single = embed_faces(
        model.embed,
        model.scheme,
        bench.faces,
        generator=generator,
        flip=flip,
        recovery=recovery,
        batch_size=batch_size,
    )
    result = evaluate_pairs(
        benchmark,
        pair_scores(combined, bench.pairs),
        bench.same,
        bench.folds,
        far=far,
        single_scores=pair_scores(single, bench.pairs) if recovery else None,
        model_threshold=model.threshold,
        missing_pairs=sum(bench.missing_pairs.values()),
        recovery=recovery,
    )
    result.extra = {
        "model": str(model_dir),
        "scheme": model.scheme.name,
        "backbone": model.backbone_name,
        "flip": flip,
        "seed": seed,
        "missing_pairs_by_fold": {str(k): v for k, v in bench.missing_pairs.items()},
        "images": int(bench.faces.shape[0]),
    }
    return result
