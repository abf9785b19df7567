"""Test helpers that make synthetic data."""

from __future__ import annotations

import numpy as np


def smooth_face_like(rng: np.random.Generator, n: int = 1, size: int = 112) -> np.ndarray:
    """Random smooth RGB uint8 images: natural-image-like spectra, not white noise."""
    import torch
    import torch.nn.functional as F

    coarse = torch.from_numpy(rng.uniform(0, 255, (n, 3, size // 8, size // 8)))
    img = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    img = img + torch.from_numpy(rng.normal(0, 8, img.shape))
    return img.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
