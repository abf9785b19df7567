from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceobfuscator.errors import FaceObfuscatorError, KeyFileError, KeyPinError, SealError
from faceobfuscator.protocol.binding import Binding
from faceobfuscator.protocol.sealing import (
    SEAL_OVERHEAD,
    ServerKeyPair,
    ServerPublicKey,
    open_sealed,
    pin_server_key,
    seal,
    sealed_size,
)

BINDING = Binding("0123456789abcdef0123456789abcdef", "verify", "ann", "ab" * 32, 1)
AAD = BINDING.encode()
KEY = ServerKeyPair.generate()
PAYLOAD = os.urandom(1000)
BLOB = seal(PAYLOAD, KEY.public_key, aad=AAD)


def test_round_trip_and_size() -> None:
    assert open_sealed(BLOB, KEY, aad=AAD) == PAYLOAD
    assert len(BLOB) == sealed_size(len(PAYLOAD)) == len(PAYLOAD) + SEAL_OVERHEAD == 1067
    assert seal(PAYLOAD, KEY.public_key, aad=AAD) != BLOB  # a fresh ephemeral key each time
    assert PAYLOAD not in BLOB


def test_seal_error_is_a_project_value_error() -> None:
    assert issubclass(SealError, FaceObfuscatorError) and issubclass(SealError, ValueError)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(BLOB) - 1), st.integers(0, 7))
def test_any_flipped_bit_is_refused(index: int, bit: int) -> None:
    tampered = bytearray(BLOB)
    tampered[index] ^= 1 << bit
    with pytest.raises(SealError):
        open_sealed(bytes(tampered), KEY, aad=AAD)


@pytest.mark.parametrize("cut", [0, 1, SEAL_OVERHEAD - 1, len(BLOB) - 1])
def test_truncated_blob_is_refused(cut: int) -> None:
    with pytest.raises(SealError):
        open_sealed(BLOB[:cut], KEY, aad=AAD)


@pytest.mark.parametrize(
    "change",
    [
        {"challenge_id": "f" * 32},
        {"operation": "enroll"},
        {"subject": "bob"},
        {"protocol_hash": "cd" * 32},
        {"format_version": 2},
    ],
    ids=lambda c: next(iter(c)),
)
def test_each_bound_field_is_checked(change: dict) -> None:
    other = dataclasses.replace(BINDING, **change).encode()
    with pytest.raises(SealError, match="does not authenticate"):
        open_sealed(BLOB, KEY, aad=other)


def test_identify_binding_cannot_stand_for_verify() -> None:
    ident = dataclasses.replace(BINDING, operation="identify", subject="").encode()
    blob = seal(PAYLOAD, KEY.public_key, aad=ident)
    assert open_sealed(blob, KEY, aad=ident) == PAYLOAD
    with pytest.raises(SealError):
        open_sealed(blob, KEY, aad=AAD)


def test_other_server_key_is_refused_by_name() -> None:
    other = ServerKeyPair.generate()
    with pytest.raises(SealError, match=f"sealed to server key {KEY.key_id}"):
        open_sealed(BLOB, other, aad=AAD)


def test_key_id_relabelled_to_another_key_does_not_open() -> None:
    other = ServerKeyPair.generate()
    relabelled = BLOB[:11] + bytes.fromhex(other.key_id) + BLOB[19:]
    with pytest.raises(SealError, match="does not authenticate"):
        open_sealed(relabelled, other, aad=AAD)


def test_several_server_keys_open_what_each_sealed() -> None:
    new = ServerKeyPair.generate()
    blob_new = seal(b"new", new.public_key, aad=AAD)
    assert open_sealed(BLOB, [new, KEY], aad=AAD) == PAYLOAD
    assert open_sealed(blob_new, [new, KEY], aad=AAD) == b"new"


def test_save_and_load_keep_the_key_private(tmp_path: Path) -> None:
    path = tmp_path / "server.key"
    KEY.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = ServerKeyPair.load(path)
    assert loaded.fingerprint == KEY.fingerprint
    assert open_sealed(BLOB, loaded, aad=AAD) == PAYLOAD
    with pytest.raises(KeyFileError, match="exists"):
        ServerKeyPair.generate().save(path)
    path.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        ServerKeyPair.load(path)


def test_load_refuses_missing_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        ServerKeyPair.load(tmp_path / "nope")
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"not a key")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="PEM"):
        ServerKeyPair.load(bad)


def test_public_key_encoding_and_fingerprint() -> None:
    import hashlib

    pub = KEY.public_key
    assert len(pub.raw) == 32
    assert pub.fingerprint == hashlib.sha256(pub.raw).hexdigest()
    assert pub.key_id == pub.fingerprint[:16]
    assert ServerPublicKey.from_base64(pub.to_base64()) == pub
    with pytest.raises(KeyFileError, match="low-order point"):
        ServerPublicKey(bytes(32))
    with pytest.raises(KeyFileError, match="32 bytes"):
        ServerPublicKey(pub.raw[:-1])


def test_pinning() -> None:
    pub = KEY.public_key
    assert pin_server_key(pub, pub.fingerprint) is pub
    assert pin_server_key(pub, pub.fingerprint.upper()) is pub
    assert pin_server_key(pub, None) is pub
    swapped = ServerKeyPair.generate().public_key
    with pytest.raises(KeyPinError, match="not the pinned"):
        pin_server_key(swapped, pub.fingerprint)
    assert pin_server_key(swapped, pub.fingerprint, allow_change=True) is swapped
    with pytest.raises(KeyPinError, match="64 hex digits"):
        pin_server_key(pub, "abc")


def test_reprs_hold_no_key_material() -> None:
    assert repr(KEY) == f"ServerKeyPair(key_id={KEY.key_id!r})"
