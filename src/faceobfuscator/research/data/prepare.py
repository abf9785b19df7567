"""Align a whole dataset, or any folder of photos, to
``<out>/<identity>/.../<name>.png`` (112x112 RGB PNG), with a manifest
(``manifest.jsonl``, one :class:`~faceobfuscator.research.data.datasets.ManifestEntry` per
line) and a ``summary.json``. Resumable: images already in the manifest are not redone.

Detection policy per dataset (:data:`POLICIES`): YuNet (the client's default detector),
the selected face checked by the client's plausibility gate; the pre-centred datasets (LFW,
AT&T) take the face nearest the centre and fall back to the fixed centre crop, while CFP
takes the largest face and otherwise records the image as failed without writing a crop. A
folder of unlabelled photos (:func:`prepare_folder`) takes the largest face with no
fallback (:data:`FOLDER_POLICY`). The dlib policies of earlier releases (HOG, HOG with more
upsampling, then MMOD for CFP) stay available as :data:`DLIB_POLICIES`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.data.datasets import (
    MANIFEST_NAME,
    SUMMARY_NAME,
    ManifestEntry,
    image_root,
    list_folder_images,
    list_images,
    prepared_path,
    read_manifest,
)

__all__ = [
    "DLIB_POLICIES",
    "FOLDER_POLICY",
    "POLICIES",
    "DetectionPolicy",
    "prepare_dataset",
    "prepare_folder",
]


@dataclass(frozen=True)
class DetectionPolicy:
    """How one dataset is aligned.

    Attributes:
        stages: detection attempts in order, ``(label, detector, upsample, max_side)``.
        fallback: ``"centre"`` or ``"none"`` after the last stage fails.
        select: which face when several are found (``"largest"`` or ``"central"``).
    """

    stages: tuple[tuple[str, str, int, int], ...]
    fallback: str
    select: str


_YUNET = (("yunet", "yunet", 0, 640),)
POLICIES = {
    "lfw": DetectionPolicy(stages=_YUNET, fallback="centre", select="central"),
    "att": DetectionPolicy(stages=_YUNET, fallback="centre", select="central"),
    "cfp": DetectionPolicy(stages=_YUNET, fallback="none", select="largest"),
}
_HOG = (("hog", "hog", 1, 640), ("hog-up2", "hog", 2, 1024))
DLIB_POLICIES = {
    "lfw": DetectionPolicy(stages=_HOG, fallback="centre", select="central"),
    "att": DetectionPolicy(stages=_HOG, fallback="centre", select="central"),
    "cfp": DetectionPolicy(
        stages=(*_HOG, ("cnn", "cnn", 0, 400)), fallback="none", select="largest"
    ),
}
#: Unlabelled photos (:func:`prepare_folder`): the largest face, nothing when none is found.
FOLDER_POLICY = POLICIES["cfp"]

_WORKER: dict[str, Any] = {}


def prepare_dataset(
    name: str,
    root: str | Path,
    out_dir: str | Path,
    *,
    config: ProtocolConfig,
    workers: int = 2,
    limit: int | None = None,
    progress: bool = True,
    policy: DetectionPolicy | None = None,
) -> dict[str, Any]:
    """Align dataset ``name`` (``"lfw"``, ``"cfp"``, ``"att"``) from the datasets ``root``
    into ``out_dir`` and return the summary (also written to ``out_dir/summary.json``).

    Args:
        config: protocol configuration; saved as ``out_dir/config.json``, and a folder
            prepared with another configuration is refused.
        workers: processes, each with its own aligner; 1 runs in this process.
        limit: only the first ``limit`` images in sorted order.
        progress: show a tqdm progress bar.
        policy: how to detect and select faces; default ``POLICIES[name]``.
    """
    images = list_images(name, root)
    return _prepare(
        name,
        image_root(name, root),
        images,
        policy if policy is not None else POLICIES[name],
        out_dir,
        config=config,
        workers=workers,
        limit=limit,
        progress=progress,
    )


def prepare_folder(
    name: str,
    images_dir: str | Path,
    out_dir: str | Path,
    *,
    config: ProtocolConfig,
    workers: int = 2,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Align every photo under ``images_dir`` (:func:`list_folder_images`: ``.jpg``,
    ``.jpeg``, ``.png``, recursively) into ``out_dir`` with :data:`FOLDER_POLICY`, exactly
    as :func:`prepare_dataset` does for a named dataset (same manifest, summary and
    resumption). ``name`` labels the summary; relpaths under ``images_dir`` are the sources
    and the first path component the identity (``""`` for photos at the top)."""
    if not name or "/" in name or name.strip() != name:
        raise InputError(f"name={name!r}: expected a short label such as 'fairface'")
    images = list_folder_images(images_dir)
    return _prepare(
        name,
        Path(images_dir),
        images,
        FOLDER_POLICY,
        out_dir,
        config=config,
        workers=workers,
        limit=limit,
        progress=progress,
    )


def _prepare(
    name: str,
    image_dir: Path,
    images: list[tuple[str, str]],
    policy: DetectionPolicy,
    out_dir: str | Path,
    *,
    config: ProtocolConfig,
    workers: int,
    limit: int | None,
    progress: bool,
) -> dict[str, Any]:
    import json

    from tqdm import tqdm

    if workers < 1:
        raise InputError(f"workers={workers} must be >= 1")
    if limit is not None and limit < 1:
        raise InputError(f"limit={limit} must be >= 1")
    images = images[:limit]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, config)
    done = read_manifest(out)
    todo = [item for item in images if not _is_done(out, done.get(item[1]))]
    started = time.perf_counter()
    times: list[float] = []
    with contextlib.ExitStack() as stack:
        results = _start(policy, image_dir, out, config, todo, workers, stack)
        manifest = stack.enter_context(open(_manifest_for_append(out), "a", encoding="utf-8"))
        bar = tqdm(total=len(images), initial=len(images) - len(todo), disable=not progress)
        bar.set_description(f"aligning {name}")
        for entry, ms in results:
            manifest.write(entry.to_json() + "\n")
            manifest.flush()
            done[entry.source] = entry
            times.append(ms)
            bar.update()
        bar.close()
    entries = [done[rel] for _, rel in images]
    summary = _summarise(name, policy, entries, config, times, time.perf_counter() - started)
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _check_config(out: Path, config: ProtocolConfig) -> None:
    path = out / "config.json"
    if path.is_file():
        if ProtocolConfig.load(path).hash != config.hash:
            raise ConfigError(
                f"{out} was prepared with another protocol configuration ({path}); "
                "use a new output folder or the same configuration"
            )
    else:
        config.save(path)


def _is_done(out: Path, entry: ManifestEntry | None) -> bool:
    if entry is None:
        return False
    return entry.outcome == "failed" or (out / str(entry.output)).is_file()


def _manifest_for_append(out: Path) -> Path:
    """The manifest path, with a newline added if a killed run left a partial line."""
    path = out / MANIFEST_NAME
    if path.is_file() and path.stat().st_size:
        with open(path, "rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")
    return path


def _start(
    policy: DetectionPolicy,
    image_dir: Path,
    out: Path,
    config: ProtocolConfig,
    todo: list[tuple[str, str]],
    workers: int,
    stack: contextlib.ExitStack,
) -> Iterator[tuple[ManifestEntry, float]]:
    """Results of aligning ``todo``, from a pool of ``workers`` processes or in-process."""
    init_args = (config.to_json(), policy, str(image_dir), str(out))
    if workers == 1 or len(todo) <= 1:
        _init_worker(*init_args)
        return map(_process, todo)
    # spawn, not fork: a process that already ran OpenCV (its thread pool) or torch can
    # deadlock its forked children on the first call into them.
    context = multiprocessing.get_context("spawn")
    pool = stack.enter_context(context.Pool(workers, initializer=_init_worker, initargs=init_args))
    return pool.imap_unordered(_process, todo, chunksize=4)


def _init_worker(config_json: str, policy: DetectionPolicy, image_dir: str, out_dir: str) -> None:
    import cv2

    from faceobfuscator.client.alignment import FaceAligner

    cv2.setNumThreads(1)  # parallelism comes from the worker processes
    config = ProtocolConfig.from_json(config_json)
    _WORKER.update(
        policy=policy,
        image_dir=Path(image_dir),
        out_dir=Path(out_dir),
        aligners=[
            (label, FaceAligner(config, upsample=up, max_side=side, detector=detector).load())
            for label, detector, up, side in policy.stages
        ],
    )


def _process(item: tuple[str, str]) -> tuple[ManifestEntry, float]:
    """Align one image in a worker; every failure becomes a "failed" entry."""
    from faceobfuscator.client.images import load_image
    from faceobfuscator.errors import FaceQualityError, NoFaceError

    identity, rel = item
    policy: DetectionPolicy = _WORKER["policy"]
    started = time.perf_counter()
    try:
        rgb = load_image(_WORKER["image_dir"] / rel)
        started = time.perf_counter()
        points, outcome, label, aligner = _locate(rgb, policy)
        ms = 1000 * (time.perf_counter() - started)
        crop = aligner.warp(rgb, points)
        target = prepared_path(_WORKER["out_dir"], rel)
        _write_png(crop, target)
    except NoFaceError as exc:
        labels = ", ".join(stage[0] for stage in policy.stages)
        reason = str(exc) if isinstance(exc, FaceQualityError) else f"no face detected ({labels})"
        ms = 1000 * (time.perf_counter() - started)
        return ManifestEntry(identity, rel, "failed", reason=reason), ms
    except Exception as exc:  # a corrupt file or an unreadable folder must not stop the run
        ms = 1000 * (time.perf_counter() - started)
        return ManifestEntry(identity, rel, "failed", reason=f"{type(exc).__name__}: {exc}"), ms
    detected = outcome == "detected"
    entry = ManifestEntry(
        identity,
        rel,
        outcome,
        output=target.relative_to(_WORKER["out_dir"]).as_posix(),
        landmarks=tuple((round(float(x), 2), round(float(y), 2)) for x, y in points),
        detector=label,
        reason=None if detected else "no face detected; fixed centre crop",
    )
    return entry, ms


def _locate(rgb: Any, policy: DetectionPolicy) -> tuple[Any, str, str | None, Any]:
    """Try each detection stage; the last applies the policy's fallback.

    Returns the five points, the outcome, the stage label (None for the centre fallback)
    and the aligner that found them."""
    from faceobfuscator.errors import NoFaceError

    aligners = _WORKER["aligners"]
    for label, aligner in aligners[:-1]:
        try:
            return aligner.landmarks5(rgb, select=policy.select), "detected", label, aligner
        except NoFaceError:
            continue
    label, aligner = aligners[-1]
    points, outcome = aligner.locate(rgb, fallback=policy.fallback, select=policy.select)
    return points, outcome, (label if outcome == "detected" else None), aligner


def _write_png(crop: Any, target: Path) -> None:
    """Write atomically, so an interrupted run never leaves a truncated PNG."""
    from PIL import Image

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    Image.fromarray(crop).save(tmp, format="PNG")
    os.replace(tmp, target)


def _summarise(
    name: str,
    policy: DetectionPolicy,
    entries: list[ManifestEntry],
    config: ProtocolConfig,
    times: list[float],
    seconds: float,
) -> dict[str, Any]:
    counts = Counter(e.outcome for e in entries)
    total = len(entries)
    not_detected = counts["centre"] + counts["failed"]
    # one count per kind of reason: the text before its per-image details in brackets
    reasons = Counter(str(e.reason).split(" (")[0] for e in entries if e.outcome == "failed")
    return {
        "dataset": name,
        "config_hash": config.hash,
        "policy": {
            "stages": [list(s) for s in policy.stages],
            "fallback": policy.fallback,
            "select": policy.select,
        },
        "total": total,
        "detected": counts["detected"],
        "centre": counts["centre"],
        "failed": counts["failed"],
        "detection_failed_share": round(not_detected / total, 5) if total else 0.0,
        "fallback": (
            f"{counts['centre']} images without a detected face got the fixed centre crop"
            if policy.fallback == "centre"
            else f"{counts['failed']} images without a detected face were left out"
        ),
        "by_detector": dict(Counter(e.detector for e in entries if e.detector)),
        "failed_reasons": dict(reasons),
        "this_run": {
            "processed": len(times),
            "seconds": round(seconds, 1),
            "detect_ms_mean": round(sum(times) / len(times), 1) if times else None,
        },
    }
