"""The optional persistent embedding cache, encrypted with AES-256-GCM.

Each cached embedding is sealed with a fresh 96-bit nonce and authenticated together with
the model's hash and the template's id, so a sealed row cannot be moved to another template
or read as another model's embedding. A row that does not open (another key, another
model, tampering) is treated as missing: the embedding is computed again and re-sealed.
"""

from __future__ import annotations

import secrets
import struct

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from faceobfuscator.errors import ConfigError

__all__ = ["EmbeddingSealer"]

_NONCE = 12


class EmbeddingSealer:
    """Seal and open embeddings of one model under one key.

    Args:
        key: 32 bytes.
        model_hash: identifies the model whose embeddings are sealed.
        dim: embedding size.
    """

    def __init__(self, key: bytes, *, model_hash: str, dim: int) -> None:
        if len(key) != 32:
            raise ConfigError(f"the cache key must be 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)
        self.model_hash = model_hash
        self.dim = dim

    def _aad(self, template_id: int) -> bytes:
        return self.model_hash.encode() + struct.pack("<q", template_id)

    def seal(self, template_id: int, embedding: np.ndarray) -> bytes:
        """Nonce followed by the ciphertext of the float32 embedding."""
        plain = np.ascontiguousarray(embedding, dtype="<f4").reshape(-1)
        if plain.size != self.dim:
            raise ValueError(f"embedding has {plain.size} values, expected {self.dim}")
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, plain.tobytes(), self._aad(template_id))

    def open(self, template_id: int, sealed: bytes) -> np.ndarray | None:
        """The embedding, or None when ``sealed`` does not authenticate for this template,
        model and key."""
        if len(sealed) != _NONCE + 4 * self.dim + 16:
            return None
        try:
            plain = self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], self._aad(template_id))
        except InvalidTag:
            return None
        return np.frombuffer(plain, dtype="<f4").astype(np.float32)
