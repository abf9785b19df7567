"""The optional persistent embedding cache, encrypted with AES-256-GCM.

Each cached embedding is sealed with a fresh 96-bit nonce and authenticated together with
the model's hash and the template's id, so a sealed row cannot be moved to another template
or read as another model's embedding. A row that does not open (another key, another
model, tampering) is treated as missing: the embedding is computed again and re-sealed.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Sequence

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

    def open_many(
        self, template_ids: Sequence[int], sealed: Sequence[bytes | None]
    ) -> tuple[list[int], np.ndarray]:
        """Open many at once (start-up opens a million): the positions in the inputs
        whose sealed embedding opens for its template, and those embeddings ``(n, dim)``
        float32 in the same order; the rest (None, another key or model, tampered) are
        left out."""
        size, head, ok, plains = _NONCE + 4 * self.dim + 16, self.model_hash.encode(), [], []
        decrypt, pack = self._aead.decrypt, struct.Struct("<q").pack
        for i, (tid, blob) in enumerate(zip(template_ids, sealed, strict=True)):
            if blob is None or len(blob) != size:
                continue
            try:
                plains.append(decrypt(blob[:_NONCE], blob[_NONCE:], head + pack(tid)))
            except InvalidTag:
                continue
            ok.append(i)
        emb = np.frombuffer(b"".join(plains), dtype="<f4").reshape(len(ok), self.dim)
        return ok, emb.astype(np.float32)  # a writable native copy

    def open(self, template_id: int, sealed: bytes) -> np.ndarray | None:
        """The embedding, or None when ``sealed`` does not authenticate for this template,
        model and key."""
        opened, emb = self.open_many([template_id], [sealed])
        return emb[0] if opened else None
