"""The sealed embedding cache and API keys."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from faceobfuscator.errors import ConfigError
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.keys import KeyRing, Role, key_digest, new_api_key


def test_sealed_embedding_opens_only_for_its_template_model_and_key():
    key = os.urandom(32)
    emb = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    sealer = EmbeddingSealer(key, model_hash="m1", dim=8)
    sealed = sealer.seal(5, emb)
    assert emb.tobytes() not in sealed
    np.testing.assert_array_equal(sealer.open(5, sealed), emb)
    assert sealer.open(6, sealed) is None
    assert EmbeddingSealer(key, model_hash="m2", dim=8).open(5, sealed) is None
    assert EmbeddingSealer(os.urandom(32), model_hash="m1", dim=8).open(5, sealed) is None
    tampered = bytearray(sealed)
    tampered[20] ^= 1
    assert sealer.open(5, bytes(tampered)) is None
    assert sealer.open(5, sealed[:-1]) is None
    assert sealer.seal(5, emb) != sealed  # fresh nonce every time


def test_open_many_keeps_only_what_authenticates_in_order():
    sealer = EmbeddingSealer(os.urandom(32), model_hash="m1", dim=4)
    emb = np.random.default_rng(1).standard_normal((4, 4)).astype(np.float32)
    sealed = [sealer.seal(i, e) for i, e in enumerate(emb)]
    tampered = bytearray(sealed[2])
    tampered[-1] ^= 1
    ids, got = sealer.open_many(
        [0, 1, 2, 3, 9, 1], [sealed[0], sealed[3], bytes(tampered), sealed[3], b"short", None]
    )
    assert ids == [0, 3] and got.dtype == np.float32 and got.shape == (2, 4)  # positions
    np.testing.assert_array_equal(got, emb[[0, 3]])  # template 1 sealed as 3 does not open
    ids, got = sealer.open_many([], [])
    assert ids == [] and got.shape == (0, 4)


def test_sealer_rejects_short_keys():
    with pytest.raises(ConfigError, match="32 bytes"):
        EmbeddingSealer(b"short", model_hash="m", dim=8)


def test_keys_are_random_and_stored_as_sha256():
    a, b = new_api_key(), new_api_key()
    assert a != b and a.startswith("fo_") and len(a) > 40
    assert key_digest(a) == hashlib.sha256(a.encode()).hexdigest()


def test_keyring_tells_roles_apart():
    admin, client = new_api_key(), new_api_key()
    ring = KeyRing(admin=[key_digest(admin)], client=[key_digest(client)])
    assert ring.role_of(admin) is Role.ADMIN
    assert ring.role_of(client) is Role.CLIENT
    assert ring.role_of(new_api_key()) is None
    assert ring.role_of(key_digest(admin)) is None  # the digest is not a key
    assert ring.role_of("") is None
