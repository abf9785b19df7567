"""The client's local pipeline for one ordinary photo: decode, detect and align, transform,
obfuscate, encode. Only the returned payload bytes ever leave the client.

This is :func:`faceobfuscator.protect.protect_photo` that also takes an already decoded
RGB image and any object with an ``align`` method (:class:`Aligner`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .config import ProtocolConfig
from .protect import protect_aligned

__all__ = ["Aligner", "ImageSource", "protect_image"]

#: A photo: a file path, encoded bytes (JPEG, PNG, ...) or an RGB uint8 array ``(H, W, 3)``.
ImageSource = str | Path | bytes | np.ndarray


class Aligner(Protocol):
    """Finds a face in an RGB uint8 image and warps it onto the protocol's template
    (:class:`faceobfuscator.alignment.FaceAligner`)."""

    def align(self, rgb: np.ndarray) -> np.ndarray: ...


def protect_image(
    source: ImageSource,
    config: ProtocolConfig,
    *,
    aligner: Aligner | None = None,
    generator: torch.Generator | None = None,
) -> bytes:
    """An ordinary photo -> payload bytes for ``config``, with a fresh secure random draw
    unless ``generator`` is given.

    Raises:
        ImageError: the image cannot be decoded.
        NoFaceError: no face was found.
    """
    from .alignment import FaceAligner, load_image

    rgb = source if isinstance(source, np.ndarray) else load_image(source)
    aligner = aligner if aligner is not None else FaceAligner(config)
    return protect_aligned(aligner.align(rgb), config, generator=generator)
