"""How often each face detector finds and aligns a face on LFW, CFP frontal and CFP
profile images, how long a photo takes, and photo -> payload latency and memory by photo
size (``faceobf bench detectors`` and ``faceobf bench photo``)."""

from __future__ import annotations

import io
import multiprocessing
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.bench.timing import latency_summary

__all__ = ["SETS", "detector_comparison", "photo_latency"]

#: Image sets of the comparison: (dataset, pose filter, face selection of its policy).
SETS = {
    "lfw": ("lfw", "", "central"),
    "cfp-frontal": ("cfp", "/frontal/", "largest"),
    "cfp-profile": ("cfp", "/profile/", "largest"),
}


def _images(root: Path, name: str, sample: int | None, seed: int) -> list[Path]:
    from faceobfuscator.research.data.datasets import image_root, list_images

    dataset, pose, _ = SETS[name]
    rels = [rel for _, rel in list_images(dataset, root) if pose in f"/{rel}"]
    if sample is not None and sample < len(rels):
        pick = np.sort(np.random.default_rng(seed).choice(len(rels), sample, replace=False))
        rels = [rels[i] for i in pick]
    folder = image_root(dataset, root)
    return [folder / rel for rel in rels]


def detector_comparison(
    root: str | Path,
    *,
    detector: str,
    sets: tuple[str, ...] = tuple(SETS),
    sample: int | None = None,
    seed: int = 0,
    config: ProtocolConfig | None = None,
) -> dict[str, Any]:
    """Per image set: images tried, faces found (any detection), aligned (the selected
    face passes the plausibility gate) and the latency of detection, selection, gate and
    warp for one decoded photo. ``sample`` images per set drawn with ``seed`` (all when
    None); dlib's detectors run with the upsampling of the old default (1)."""
    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.images import load_image
    from faceobfuscator.errors import NoFaceError

    aligner = FaceAligner(config or ProtocolConfig(), detector=detector).load()
    out: dict[str, Any] = {"detector": detector, "sample": sample, "seed": seed, "sets": {}}
    for name in sets:
        select = SETS[name][2]
        found = aligned = 0
        times = []
        paths = _images(Path(root), name, sample, seed)
        for path in paths:
            rgb = load_image(path)
            t0 = time.perf_counter()
            faces = aligner.faces(rgb)
            try:
                face = aligner.choose(faces, rgb.shape, select=select)
                aligner.warp(rgb, face.landmarks)
                aligned += 1
            except NoFaceError:
                pass
            times.append(1000 * (time.perf_counter() - t0))
            found += bool(faces)
        out["sets"][name] = {
            "images": len(paths),
            "found": found,
            "aligned": aligned,
            "found_share": round(found / len(paths), 4),
            "aligned_share": round(aligned / len(paths), 4),
            **latency_summary(times, digits=1),
        }
    return out


def _photo(face: np.ndarray, size: tuple[int, int]) -> bytes:
    """A JPEG of ``size`` (width, height), grey, with ``face`` scaled to half its height."""
    from PIL import Image

    w, h = size
    side = h // 2
    canvas = Image.new("RGB", (w, h), (120, 120, 120))
    canvas.paste(Image.fromarray(face).resize((side, side)), ((w - side) // 2, h // 4))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _photo_worker(args: tuple[bytes, bytes, int]) -> dict[str, Any]:
    import cv2
    import torch

    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.protect import protect_photo

    warm, data, repeats = args
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    config = ProtocolConfig()
    aligner = FaceAligner(config).load()
    protect_photo(warm, config, aligner=aligner)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        protect_photo(data, config, aligner=aligner)
        times.append(1000 * (time.perf_counter() - t0))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**latency_summary(times, digits=1), "peak_extra_mb": round((after - before) / 1024)}


def photo_latency(
    face: np.ndarray,
    *,
    sizes: tuple[tuple[int, int], ...] = ((640, 480), (6000, 4000)),
    repeats: int = 30,
) -> dict[str, Any]:
    """Photo (JPEG bytes) -> payload with the default detector, one thread, per photo size
    ``(width, height)``: p50/p95/p99 ms, and the peak memory above a warmed-up process
    (each size in a fresh process; decoding included)."""
    context = multiprocessing.get_context("spawn")
    warm = _photo(face, (320, 240))
    out: dict[str, Any] = {}
    for w, h in sizes:
        data = _photo(face, (w, h))
        runs = max(3, repeats if w * h <= 4_000_000 else repeats // 5)
        with context.Pool(1) as pool:
            result = pool.apply(_photo_worker, ((warm, data, runs),))
        out[f"{w}x{h}"] = {"megapixels": round(w * h / 1e6, 1), "jpeg_bytes": len(data), **result}
    return out
