"""Photos to payloads on the client: decode, detect and align, transform, obfuscate, encode.

Only the payload bytes this returns ever leave the client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.features import protect_faces
from faceobfuscator.protocol.payload import encode_payload

__all__ = ["Aligner", "ImageSource", "protect_aligned", "protect_photo", "channel_statistics"]

#: A photo: a file path, encoded bytes (JPEG, PNG, ...) or an RGB uint8 array ``(H, W, 3)``.
ImageSource = str | Path | bytes | np.ndarray


class Aligner(Protocol):
    """Finds a face in an RGB uint8 image and warps it onto the protocol's template
    (:class:`faceobfuscator.client.alignment.FaceAligner`)."""

    def align(self, rgb: np.ndarray) -> np.ndarray: ...


def protect_aligned(
    face: np.ndarray, config: ProtocolConfig, *, generator: torch.Generator | None = None
) -> bytes:
    """One aligned uint8 face ``(S, S, 3)`` -> payload bytes."""
    feature = protect_faces(face[None], config, generator=generator)[0]
    return encode_payload(feature.numpy(), config)


def protect_photo(
    source: ImageSource,
    config: ProtocolConfig,
    *,
    aligner: Aligner | None = None,
    generator: torch.Generator | None = None,
) -> bytes:
    """An ordinary photo -> payload bytes, with a fresh secure random draw unless
    ``generator`` is given.

    Raises:
        ImageError: the image cannot be decoded.
        NoFaceError: no face was found.
    """
    from faceobfuscator.client.alignment import FaceAligner
    from faceobfuscator.client.images import load_image

    rgb = source if isinstance(source, np.ndarray) else load_image(source)
    aligner = aligner if aligner is not None else FaceAligner(config)
    return protect_aligned(aligner.align(rgb), config, generator=generator)


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
