"""The client's local pipeline for one ordinary photo: decode, detect and align, transform,
obfuscate, encode. Only the returned payload bytes ever leave the client.

This is :func:`faceobfuscator.protect.protect_photo` that also takes an already decoded
RGB image, which is what :class:`faceobfuscator.sdk.Client` hands it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import ProtocolConfig
from .protect import protect_aligned, protect_photo

if TYPE_CHECKING:
    from .alignment import FaceAligner

__all__ = ["ImageSource", "protect_image"]

#: A photo: a file path, encoded bytes (JPEG, PNG, ...) or an RGB uint8 array ``(H, W, 3)``.
ImageSource = str | Path | bytes | np.ndarray


def protect_image(
    source: ImageSource,
    config: ProtocolConfig,
    *,
    aligner: FaceAligner | None = None,
    generator: torch.Generator | None = None,
) -> bytes:
    """An ordinary photo -> payload bytes for ``config``, with a fresh secure random draw
    unless ``generator`` is given.

    Raises:
        ImageError: the image cannot be decoded.
        NoFaceError: no face was found.
    """
    if not isinstance(source, np.ndarray):
        return protect_photo(source, config, aligner=aligner, generator=generator)
    from .alignment import FaceAligner

    aligner = aligner if aligner is not None else FaceAligner(config)
    return protect_aligned(aligner.align(source), config, generator=generator)
