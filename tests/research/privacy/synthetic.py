"""Small deterministic synthetic faces for the privacy tests, and where the real datasets
live."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DATASETS = Path(__file__).resolve().parents[3].parent / "shared" / "datasets"


def synthetic_faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` uint8 RGB ``(n, size, size, 3)`` images: a bright ellipse ("face") with two
    dark blobs ("eyes") and a bar ("mouth") on a background gradient, each with its own
    position, size and colours, so that an attack has something to learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = np.empty((n, size, size, 3), np.float64)
    for i in range(n):
        bg = rng.uniform(0.1, 0.5, 3)[None, None] * (0.6 + 0.4 * xx[..., None])
        cx, cy = rng.uniform(0.4, 0.6, 2)
        rx, ry = rng.uniform(0.22, 0.32), rng.uniform(0.3, 0.4)
        face = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        img = np.where(face[..., None], rng.uniform(0.55, 0.95, 3)[None, None], bg)
        for ex in (cx - rx / 2.5, cx + rx / 2.5):
            eye = ((xx - ex) ** 2 + (yy - (cy - ry / 3)) ** 2) < (rx / 6) ** 2
            img[eye] = 0.1
        mouth = (np.abs(xx - cx) < rx / 2) & (np.abs(yy - (cy + ry / 2)) < ry / 12)
        img[mouth] = rng.uniform(0.3, 0.6)
        out[i] = img
    return np.round(out * 255).astype(np.uint8)
