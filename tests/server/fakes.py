"""A fast stand-in embedder and synthetic payloads for server tests."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from faceobfuscator import ProtocolConfig, encode_payload, protect_faces
from faceobfuscator.protocol.obfuscation import recover
from tests.helpers import smooth_face_like


class FakeEmbedder:
    """Identity recovery, magnitudes pooled over 8x8 blocks, a fixed random projection:
    equal for every obfuscation of one face (recovery undoes the scale, the magnitude the
    signs), different across faces. Counts the payloads it embeds."""

    name = "fake"

    def __init__(self, *, dim: int = 64, seed: int = 0, threshold: float = 0.9) -> None:
        self.protocol = ProtocolConfig()
        self.threshold = threshold
        self.dim = dim
        self.model_hash = hashlib.sha256(f"fake-{dim}-{seed}".encode()).hexdigest()
        c, s, _ = self.protocol.feature_shape
        rng = np.random.default_rng(seed)
        self._proj = rng.standard_normal((c * (s // 8) ** 2, dim)).astype(np.float32)
        self.calls = 0

    def embed(self, features: np.ndarray) -> np.ndarray:
        self.calls += len(features)
        d = np.abs(recover(np.array(features, dtype=np.float32), self.protocol))
        n, c, s, _ = d.shape
        pooled = d.reshape(n, c, s // 8, 8, s // 8, 8).mean(axis=(3, 5)).reshape(n, -1)
        pooled = pooled - pooled.mean(axis=1, keepdims=True)
        e = pooled @ self._proj
        return e / np.linalg.norm(e, axis=1, keepdims=True)


def faces(n: int, seed: int = 0) -> np.ndarray:
    """``n`` distinct synthetic aligned faces (N, 112, 112, 3) uint8."""
    return smooth_face_like(np.random.default_rng(seed), n)


def payloads(
    faces_: np.ndarray, *, seed: int = 0, config: ProtocolConfig | None = None
) -> list[bytes]:
    """One payload per face, each with its own obfuscation draw."""
    config = config or ProtocolConfig()
    g = torch.Generator().manual_seed(seed)
    feats = protect_faces(faces_, config, generator=g).numpy()
    return [encode_payload(f, config) for f in feats]
