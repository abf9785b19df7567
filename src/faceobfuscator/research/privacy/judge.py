"""Calibration of the privacy evaluation's independent judge (dlib's ResNet) for the
client's aligner: measure the crop -> dlib-chip map on YuNet-aligned faces and compare the
judge's verification on our aligned LFW test crops with the first round's map (measured on
dlib-aligned faces). ``faceobf privacy judge`` writes ``judge.json`` and ``judge.md``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.research.privacy.identity import (
    CHIP_FROM_HOG_112,
    CHIP_FROM_YUNET_112,
    DLIB_THRESHOLD,
    DlibRecognizer,
    measure_chip_matrix,
)

__all__ = ["calibrate_judge", "judge_table", "write_judge_report"]

_CORNERS = np.array([[0, 0, 1], [111, 0, 1], [0, 111, 1], [111, 111, 1]], float).T


def _verification(accept: np.ndarray, same: np.ndarray) -> dict[str, float | int]:
    """Accuracy, TMR and FMR of the judge's decisions ``accept`` on ``(P,)`` pairs."""
    return {
        "accuracy": float((accept == same).mean()),
        "tmr": float(accept[same].mean()),
        "fmr": float(accept[~same].mean()),
        "mated": int(same.sum()),
        "non_mated": int((~same).sum()),
    }


def calibrate_judge(
    *,
    datasets_root: str | Path,
    aligned_root: str | Path,
    images: int = 300,
    pairs: int = 600,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure the chip map for the client's default aligner and the judge's accuracy.

    Args:
        images: LFW photos drawn (``numpy.random.default_rng(seed)``) for the chip map.
        pairs: LFW test-fold pairs (folds 6-10, half mated) drawn for the verification of
            each map, on the aligned crops under ``aligned_root/lfw``.

    Returns:
        ``{"matrix": 2x3 list, "faces": int, "max_corner_shift_px": float,
        "verification": {"hog": {...}, "yunet": {...}}}``; verification at dlib's own
        threshold (Euclidean distance < 0.6, :data:`DLIB_THRESHOLD`).

    Raises:
        InputError: no LFW images or aligned crops were found.
    """
    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.images import load_image
    from faceobfuscator.protocol.config import ProtocolConfig
    from faceobfuscator.research.data.datasets import image_root, list_images
    from faceobfuscator.research.evaluation.benchmarks import load_benchmark

    protocol = ProtocolConfig()
    listed = list_images("lfw", datasets_root)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(listed), min(images, len(listed)), replace=False)
    root = image_root("lfw", datasets_root)
    aligner = FaceAligner(protocol).load()
    log(f"chip map: {len(chosen)} LFW photos, YuNet landmarks against dlib's chips")
    matrix, used = measure_chip_matrix(
        (load_image(root / listed[k][1]) for k in chosen), aligner=aligner
    )
    shift = float(np.abs(matrix @ _CORNERS - CHIP_FROM_HOG_112 @ _CORNERS).max())

    bench = load_benchmark("lfw", datasets_root=datasets_root, aligned_root=aligned_root)
    mated = np.flatnonzero(bench.same)
    non_mated = np.flatnonzero(~bench.same)
    half = pairs // 2
    pick = np.concatenate(
        [
            rng.choice(mated, min(half, len(mated)), replace=False),
            rng.choice(non_mated, min(half, len(non_mated)), replace=False),
        ]
    )
    used_faces = np.unique(bench.pairs[pick])
    where = {int(f): i for i, f in enumerate(used_faces)}
    faces = bench.faces[used_faces].numpy()
    verification = {}
    for name, mat in (("hog", CHIP_FROM_HOG_112), ("yunet", CHIP_FROM_YUNET_112)):
        log(f"judge with the {name} map: {len(faces)} aligned LFW crops")
        desc = DlibRecognizer(protocol, matrix=mat).embed(faces)
        a = desc[[where[int(i)] for i in bench.pairs[pick, 0]]]
        b = desc[[where[int(i)] for i in bench.pairs[pick, 1]]]
        verification[name] = _verification(
            DlibRecognizer.matches(a, b).astype(bool), bench.same[pick]
        )
    return {
        "matrix": np.round(matrix, 4).tolist(),
        "faces": int(used),
        "photos": int(len(chosen)),
        "max_corner_shift_px": round(shift, 2),
        "threshold": DLIB_THRESHOLD,
        "verification": verification,
        "seed": seed,
    }


def judge_table(result: dict[str, Any]) -> str:
    """Markdown of :func:`calibrate_judge`'s result."""
    m = result["matrix"]
    lines = [
        "# The privacy judge (dlib's ResNet) on YuNet-aligned crops",
        "",
        f"Chip map measured on {result['faces']} of {result['photos']} LFW photos: "
        f"`[[{m[0][0]}, {m[0][1]}, {m[0][2]}], [{m[1][0]}, {m[1][1]}, {m[1][2]}]]`; "
        f"the first round's (dlib-aligned) map is at most "
        f"{result['max_corner_shift_px']} chip pixels away at the crop's corners.",
        "",
        f"Verification at dlib's threshold (distance < {result['threshold']}) on LFW "
        "test-fold pairs of our aligned crops:",
        "",
        "| chip map | accuracy | TMR | FMR | mated | non-mated |",
        "|---|---|---|---|---|---|",
    ]
    for name, v in result["verification"].items():
        lines.append(
            f"| {name} | {v['accuracy']:.4f} | {v['tmr']:.4f} | {v['fmr']:.4f} "
            f"| {v['mated']} | {v['non_mated']} |"
        )
    return "\n".join(lines) + "\n"


def write_judge_report(result: dict[str, Any], out_dir: str | Path) -> Path:
    """Write ``judge.json`` and ``judge.md`` under ``out_dir``; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "judge.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "judge.md").write_text(judge_table(result))
    return out / "judge.json"
