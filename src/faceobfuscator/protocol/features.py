"""The client's feature pipeline on aligned faces: greyscale, retained DCT channels,
self-normalisation and obfuscation."""

from __future__ import annotations

import numpy as np
import torch

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import fast_transform, to_greyscale
from faceobfuscator.protocol.obfuscation import obfuscate, self_normalise

__all__ = ["normalised_features", "protect_faces"]


def normalised_features(faces: np.ndarray | torch.Tensor, config: ProtocolConfig) -> torch.Tensor:
    """Aligned uint8 faces ``(..., S, S, 3)`` or ``(..., S, S)`` -> self-normalised retained
    channels ``(..., K, S, S)`` float32, before obfuscation."""
    grey = to_greyscale(faces, config)
    return self_normalise(fast_transform(grey, config), config)


def protect_faces(
    faces: np.ndarray | torch.Tensor,
    config: ProtocolConfig,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Aligned uint8 faces -> obfuscated features ``(..., K, S, S)`` float32, each image
    with its own fresh random draw."""
    return obfuscate(normalised_features(faces, config), config, generator=generator)
