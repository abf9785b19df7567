"""Photos to payloads on the client: decode, detect and align, transform, obfuscate, encode.

Only the payload bytes this returns ever leave the client.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import ProtocolConfig
from .features import protect_faces
from .payload import encode_payload

if TYPE_CHECKING:
    from .alignment import FaceAligner

__all__ = ["protect_aligned", "protect_photo", "channel_statistics"]


def protect_aligned(
    face: np.ndarray, config: ProtocolConfig, *, generator: torch.Generator | None = None
) -> bytes:
    """One aligned uint8 face ``(S, S, 3)`` -> payload bytes."""
    feature = protect_faces(face[None], config, generator=generator)[0]
    return encode_payload(feature.numpy(), config)


def protect_photo(
    source: str | Path | bytes,
    config: ProtocolConfig,
    *,
    aligner: FaceAligner | None = None,
    generator: torch.Generator | None = None,
) -> bytes:
    """An ordinary photo (path or encoded bytes) -> payload bytes.

    Raises ``ImageError`` for an undecodable image and ``NoFaceError`` when no face is found.
    """
    from .alignment import FaceAligner, load_image

    aligner = aligner if aligner is not None else FaceAligner(config)
    face = aligner.align(load_image(source))
    return protect_aligned(face, config, generator=generator)


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
