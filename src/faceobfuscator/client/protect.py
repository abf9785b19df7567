"""Photos to payloads on the client: decode, detect and align, transform, obfuscate, encode.

Only the payload bytes this returns ever leave the client.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.features import protect_faces
from faceobfuscator.protocol.outcomes import FaceBox
from faceobfuscator.protocol.payload import encode_payload

__all__ = [
    "Aligner",
    "FaceBox",
    "ImageSource",
    "ProtectedPhoto",
    "channel_statistics",
    "payload_names",
    "protect_aligned",
    "protect_face",
    "protect_photo",
]

#: A photo: a file path, encoded bytes (JPEG, PNG, ...) or an RGB uint8 array ``(H, W, 3)``.
ImageSource = str | Path | bytes | np.ndarray


class Aligner(Protocol):
    """Finds faces in an RGB uint8 image and warps one onto the protocol's template
    (:class:`faceobfuscator.client.alignment.FaceAligner`)."""

    def faces(self, rgb: np.ndarray) -> list[Any]: ...

    def choose(self, faces: list[Any], shape: tuple[int, ...], *, select: str) -> Any: ...

    def warp(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ProtectedPhoto:
    """A payload and the face it was made from."""

    payload: bytes
    face: FaceBox


def protect_aligned(
    face: np.ndarray, config: ProtocolConfig, *, generator: torch.Generator | None = None
) -> bytes:
    """One aligned uint8 face ``(S, S, 3)`` -> payload bytes."""
    feature = protect_faces(face[None], config, generator=generator)[0]
    return encode_payload(feature.numpy(), config)


def protect_face(
    source: ImageSource,
    config: ProtocolConfig,
    *,
    aligner: Aligner | None = None,
    select: str = "largest",
    generator: torch.Generator | None = None,
) -> ProtectedPhoto:
    """An ordinary photo -> the payload of one face and which face it was.

    Args:
        select: ``"largest"`` (default) or ``"central"`` face, or ``"single"``: refuse a
            photo with several faces of similar size (for enrolment).

    Raises:
        ImageError: the image cannot be decoded.
        NoFaceError: no face was found (:class:`FaceQualityError`: none usable).
        MultipleFacesError: ``select="single"`` and several faces are of similar size.
    """
    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.images import load_image

    rgb = source if isinstance(source, np.ndarray) else load_image(source)
    aligner = aligner if aligner is not None else FaceAligner(config)
    found = aligner.faces(rgb)
    face = aligner.choose(found, rgb.shape, select=select)
    payload = protect_aligned(aligner.warp(rgb, face.landmarks), config, generator=generator)
    box = tuple(int(round(v)) for v in face.box)
    return ProtectedPhoto(payload, FaceBox(box, len(found)))  # type: ignore[arg-type]


def protect_photo(
    source: ImageSource,
    config: ProtocolConfig,
    *,
    aligner: Aligner | None = None,
    select: str = "largest",
    generator: torch.Generator | None = None,
) -> bytes:
    """An ordinary photo -> payload bytes (:func:`protect_face` without the box), with a
    fresh secure random draw unless ``generator`` is given."""
    return protect_face(source, config, aligner=aligner, select=select, generator=generator).payload


def payload_names(paths: list[Path], *, suffix: str = ".fobf") -> list[Path]:
    """Output names for ``paths`` that cannot collide: the file name with ``suffix`` when
    the names are distinct, otherwise each path relative to the inputs' common folder
    (``a/01.jpg``, ``b/01.jpg`` -> ``a/01.fobf``, ``b/01.fobf``).

    Raises:
        InputError: two inputs would still share a name (the same file given twice, or
            ``01.jpg`` and ``01.png`` in one folder), naming both.
    """
    resolved = [Path(os.path.abspath(p)) for p in paths]
    names = [Path(p.name).with_suffix(suffix) for p in resolved]
    if len(set(names)) < len(names):
        common = Path(os.path.commonpath([p.parent for p in resolved]))
        names = [p.relative_to(common).with_suffix(suffix) for p in resolved]
    seen: dict[Path, Path] = {}
    for path, name in zip(paths, names, strict=True):
        if name in seen:
            raise InputError(
                f"{seen[name]} and {path} would both be written as {name}; "
                "rename one, or protect them in separate runs"
            )
        seen[name] = path
    return names


def channel_statistics(feature: np.ndarray) -> list[dict[str, float]]:
    """Per-channel summary of a feature ``(K, H, W)``: what `faceobf inspect` prints."""
    stats = []
    for ch in np.asarray(feature, dtype=np.float64):
        peak = float(np.abs(ch).max())
        stats.append(
            {
                "mean": float(ch.mean()),
                "std": float(ch.std(ddof=1)),
                "max_abs": peak,
                "log2_max_abs": float(np.log2(peak)) if peak > 0 else float("-inf"),
                "positive_share": float((ch > 0).mean()),
            }
        )
    return stats
