"""Augmentation of aligned faces before the client's protection (distillation recipe).

Each face gets, independently: a coin-flip mirror, and with the probabilities of
:class:`~faceobfuscator.research.training.config.AugmentConfig` a small random similarity
(shift, scale, rotation about the crop centre), contrast and brightness, a Gaussian blur
and a JPEG round trip. Warps, blur and JPEG are OpenCV's. The teacher's target stays the
embedding of the original face, so the network learns to be invariant to these changes.
"""

from __future__ import annotations

import numpy as np

from faceobfuscator.errors import InputError
from faceobfuscator.research.training.config import AugmentConfig

__all__ = ["augment_faces"]


def augment_faces(faces: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Augmented copies of uint8 faces ``(N, S, S, 3)`` (same shape and dtype).

    Raises:
        InputError: ``faces`` is not a uint8 ``(N, S, S, 3)`` array.
    """
    import cv2

    if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[3] != 3:
        raise InputError(f"expected uint8 faces (N, S, S, 3), got {faces.dtype} {faces.shape}")
    size = faces.shape[1]
    centre = ((size - 1) / 2, (size - 1) / 2)
    out = np.empty_like(faces)
    for i, face in enumerate(faces):
        f = face[:, ::-1] if rng.random() < 0.5 else face
        if rng.random() < config.p_geometric:
            m = cv2.getRotationMatrix2D(
                centre,
                rng.uniform(-config.rotate, config.rotate),
                rng.uniform(1 - config.scale, 1 + config.scale),
            )
            m[:, 2] = m[:, 2] + rng.uniform(-config.shift, config.shift, 2)
            f = cv2.warpAffine(
                np.ascontiguousarray(f), m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0
            )
        if rng.random() < config.p_photometric:
            c = rng.uniform(1 - config.contrast, 1 + config.contrast)
            b = rng.uniform(-config.brightness, config.brightness)
            f = np.clip(f.astype(np.float32) * c + (b + (1 - c) * 127.5), 0, 255).astype(np.uint8)
        if rng.random() < config.p_blur:
            f = cv2.GaussianBlur(np.ascontiguousarray(f), (0, 0), rng.uniform(*config.blur_sigma))
        if rng.random() < config.p_jpeg:
            quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
            ok, enc = cv2.imencode(
                ".jpg", np.ascontiguousarray(f), [cv2.IMWRITE_JPEG_QUALITY, quality]
            )
            if ok:
                f = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
        out[i] = f
    return out
