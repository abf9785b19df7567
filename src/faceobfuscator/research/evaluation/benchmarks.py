"""The verification benchmarks on our data: LFW and CFP pairs over the aligned cache,
insightface ``.bin`` packs, ``faceobf eval verify`` and the results table of several
models (``faceobf eval results``)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import DEFAULT_IMAGE_SIZE
from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT
from faceobfuscator.research.evaluation.verification import (
    VerificationResult,
    contiguous_folds,
    embed_faces,
    evaluate_pairs,
    pair_scores,
)

__all__ = ["Benchmark", "load_benchmark", "run_verification", "results_table"]


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
        identities: the person of each face ``(M,)`` str (LFW, CFP), for the larger
            non-mated set of :func:`tar_all_non_mated`; ``None`` for ``bin:`` packs.
    """

    name: str
    faces: torch.Tensor
    pairs: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    missing_pairs: dict[int, int]
    identities: np.ndarray | None = None


def load_benchmark(
    name: str,
    *,
    folds: tuple[int, ...] | None = None,
    datasets_root: str | Path = str(DATASETS_ROOT),
    aligned_root: str | Path = str(ALIGNED_ROOT),
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> Benchmark:
    """Pairs of ``lfw``/``cfp-ff``/``cfp-fp`` (folds 6-10 unless given) from the aligned
    cache, or of an insightface pack ``bin:PATH`` (folds 1-10 unless given)."""
    if name.startswith("bin:"):
        return _load_bin(name, folds or tuple(range(1, 11)), image_size)
    from faceobfuscator.research.data.datasets import prepared_path, read_manifest
    from faceobfuscator.research.data.paths import TEST_FOLDS
    from faceobfuscator.research.data.split import benchmark_pairs

    wanted = set(folds or TEST_FOLDS)
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
        identities=np.array([rel.split("/", 1)[0] for rel in index]),
    )


def _read_png(path: Path, size: int) -> np.ndarray:
    from faceobfuscator.research.data.formats import decode_image

    return decode_image(path.read_bytes(), size)


def _load_bin(name: str, folds: tuple[int, ...], size: int) -> Benchmark:
    from faceobfuscator.research.data.formats import decode_image, read_bin

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
    datasets_root: str | Path = str(DATASETS_ROOT),
    aligned_root: str | Path = str(ALIGNED_ROOT),
    device: str = "auto",
    batch_size: int = 128,
    seed: int | None = None,
    far: float = 1e-3,
    bf16: bool = False,
    progress: bool = False,
) -> VerificationResult:
    """``faceobf eval verify``: load the model and benchmark, embed, score, k-fold.

    ``recovery=False`` is the paper's Table 5 ablation (only meaningful for schemes with a
    recovery step). ``seed`` fixes the protection draws (default: a secure random seed,
    reported in the result). ``bf16`` runs the network under bf16 autocast (the client's
    protection and the server's recovery stay float32); reported in the result."""
    from faceobfuscator.recognition.modeldir import load_model

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
    autocast_type = torch.device(device).type

    def embed(x: torch.Tensor) -> torch.Tensor:
        # only the network runs in bf16: the protection and recovery stay float32
        with torch.autocast(autocast_type, dtype=torch.bfloat16, enabled=bf16):
            return model.embed(x)

    combined, single = embed_faces(
        embed,
        model.scheme,
        bench.faces,
        generator=generator,
        flip=flip,
        recovery=recovery,
        batch_size=batch_size,
        progress=progress,
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
    if bench.identities is not None:
        result.extra["tar_all_non_mated"] = tar_all_non_mated(
            combined, bench.identities, pair_scores(combined, bench.pairs)[bench.same], far=far
        )
    result.extra |= {
        "model": str(model_dir),
        "scheme": model.scheme.name,
        "backbone": model.backbone_name,
        "flip": flip,
        "bf16": bf16,
        "seed": seed,
        "missing_pairs_by_fold": {str(k): v for k, v in bench.missing_pairs.items()},
        "images": int(bench.faces.shape[0]),
    }
    return result


def _tar_table(
    rows: dict[tuple[str, str, bool], dict[str, dict[str, Any]]], benches: list[str]
) -> str:
    """TAR (%) at the target FAR: on the protocol's impostor pairs, and on every non-mated
    comparison among the benchmark's faces, with the number of non-mated comparisons."""
    lines = [
        "TAR at FAR 1e-3, % (protocol impostor pairs / all non-mated comparisons among the "
        "benchmark's images, with their count):",
        "",
        "| model | scheme | " + " | ".join(benches) + " |",
        "|" + "---|" * (len(benches) + 2),
    ]
    for (model, scheme, recovery), by_bench in rows.items():
        if not recovery:
            continue
        cells = []
        for b in benches:
            r = by_bench.get(b)
            if r is None or "tar_at_far" not in r:  # results written before TAR was recorded
                cells.append("-")
                continue
            t = r["tar_at_far"]
            cell = f"{100 * t['tar']:.1f} ({t['n_impostor']:,})"
            big = r.get("extra", {}).get("tar_all_non_mated")
            if big:
                cell += f" / {100 * big['tar']:.1f} ({big['n_non_mated']:,})"
            cells.append(cell)
        lines.append(f"| {Path(model).name} | {scheme} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tar_all_non_mated(
    embeddings: torch.Tensor, identities: np.ndarray, mated_scores: np.ndarray, *, far: float
) -> dict[str, float]:
    """TAR at ``far`` with the threshold set on every non-mated comparison among the
    benchmark's faces (each pair of images of different people, ``M * (M - 1) / 2`` minus
    the mated ones), not just the protocol's impostor pairs: at FAR 1e-3 the protocol's
    1,500 LFW impostor pairs put the threshold on one or two scores.

    Args:
        embeddings: normalised ``(M, D)``; identities: ``(M,)``; mated_scores: the
            protocol's genuine pair scores.

    Returns:
        ``tar``, ``threshold``, ``far`` (achieved), ``n_non_mated``, ``n_mated``.
    """
    from faceobfuscator.research.evaluation.verification import threshold_at_far

    e = embeddings.float().numpy()
    ids = np.unique(identities, return_inverse=True)[1]
    parts = []
    for start in range(0, len(ids), 1024):  # row blocks keep memory at O(1024 * M)
        block = e[start : start + 1024] @ e.T
        rows = np.arange(start, start + len(block))[:, None]
        upper = np.arange(len(ids))[None, :] > rows
        parts.append(block[upper & (ids[rows] != ids[None, :])].astype(np.float64))
    scores = np.concatenate(parts)
    threshold = threshold_at_far(scores, far)
    return {
        "tar": float(np.mean(mated_scores >= threshold)),
        "threshold": float(threshold),
        "far": float(np.mean(scores >= threshold)),
        "n_non_mated": int(len(scores)),
        "n_mated": int(len(mated_scores)),
    }


def results_table(results: list[dict[str, Any]]) -> str:
    """A Markdown table of :meth:`VerificationResult.to_dict` rows: one line per model and
    recovery setting, one column per benchmark (accuracy mean +- std over folds, in %),
    and a note of the pairs left out for missing crops."""
    benches = list(dict.fromkeys(r["benchmark"] for r in results))
    rows: dict[tuple[str, str, bool], dict[str, dict[str, Any]]] = {}
    for r in results:
        key = (r["extra"]["model"], r["extra"]["scheme"], r["recovery"])
        rows.setdefault(key, {})[r["benchmark"]] = r
    head = "| model | scheme | " + " | ".join(benches) + " |"
    lines = [head, "|" + "---|" * (len(benches) + 2)]
    for (model, scheme, recovery), by_bench in rows.items():
        label = scheme if recovery else f"{scheme}, no recovery (Table 5)"
        cells = []
        for b in benches:
            cell = by_bench.get(b)
            cells.append(
                "-"
                if cell is None
                else f"{100 * cell['accuracy_mean']:.2f} ± {100 * cell['accuracy_std']:.2f}"
            )
        lines.append(f"| {Path(model).name} | {label} | " + " | ".join(cells) + " |")
    lines += ["", _tar_table(rows, benches)]
    missing = {}
    for r in results:
        if r.get("missing_pairs"):
            total = r["n_pairs"] + r["missing_pairs"]
            missing[r["benchmark"]] = f"{r['benchmark']} {r['missing_pairs']} of {total}"
    if missing:
        lines.append("")
        lines.append("Pairs left out because a crop is missing: " + ", ".join(missing.values()))
    return "\n".join(lines) + "\n"
