from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceobfuscator.errors import EnvelopeError, KeyFileError
from faceobfuscator.server.security.envelope import (
    ENVELOPE_OVERHEAD,
    MasterKey,
    MasterKeyring,
    TemplateVault,
    decrypt_record,
    encrypt_record,
    record_key_id,
    reencrypt_record,
    rewrap_record,
)

OLD = MasterKey(bytes(range(32)))
NEW = MasterKey(bytes(range(32, 64)))
PLAIN = os.urandom(300)
BLOB = encrypt_record(PLAIN, OLD, subject="ann", record_id=7)


def test_round_trip_and_size() -> None:
    assert decrypt_record(BLOB, OLD, subject="ann", record_id=7) == PLAIN
    assert len(BLOB) == len(PLAIN) + ENVELOPE_OVERHEAD == 300 + 101
    assert record_key_id(BLOB) == OLD.key_id
    assert PLAIN not in BLOB


def test_key_id_is_stable_and_reveals_nothing() -> None:
    # golden value, made independently with: printf 'faceobfuscator master key id' |
    #   openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f   (first 16 digits)
    assert OLD.key_id == "08b393e56f160a18"
    assert OLD.key_id != NEW.key_id and repr(OLD) == "MasterKey(key_id='08b393e56f160a18')"


@pytest.mark.parametrize(("subject", "record_id"), [("bob", 7), ("ann", 8), ("an", 7), ("ann ", 7)])
def test_row_moved_to_another_subject_or_id_does_not_decrypt(subject: str, record_id: int) -> None:
    with pytest.raises(EnvelopeError, match="another subject or record"):
        decrypt_record(BLOB, OLD, subject=subject, record_id=record_id)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(BLOB) - 1), st.integers(0, 7))
def test_any_flipped_bit_is_refused(index: int, bit: int) -> None:
    tampered = bytearray(BLOB)
    tampered[index] ^= 1 << bit
    with pytest.raises(EnvelopeError):
        decrypt_record(bytes(tampered), MasterKeyring(OLD, previous=[NEW]), subject="ann",
                       record_id=7)  # fmt: skip


def test_wrong_master_key_is_named() -> None:
    with pytest.raises(EnvelopeError, match=f"master key {OLD.key_id}, which is not configured"):
        decrypt_record(BLOB, NEW, subject="ann", record_id=7)


def test_plain_or_truncated_rows_are_refused() -> None:
    with pytest.raises(EnvelopeError, match="plain mode"):
        decrypt_record(b"FOBF" + bytes(200), OLD, subject="ann", record_id=7)
    with pytest.raises(EnvelopeError, match="truncated"):
        decrypt_record(BLOB[:100], OLD, subject="ann", record_id=7)


def test_rewrap_moves_only_the_data_key() -> None:
    moved = rewrap_record(BLOB, OLD, NEW)
    assert record_key_id(moved) == NEW.key_id
    assert moved[-(300 + 16 + 12) :] == BLOB[-(300 + 16 + 12) :]  # same nonce and ciphertext
    assert decrypt_record(moved, NEW, subject="ann", record_id=7) == PLAIN
    with pytest.raises(EnvelopeError):
        decrypt_record(moved, OLD, subject="ann", record_id=7)


def test_reencrypt_changes_everything_but_the_plaintext() -> None:
    moved = reencrypt_record(BLOB, OLD, NEW, subject="ann", record_id=7)
    assert moved[-300:] != BLOB[-300:]
    assert decrypt_record(moved, NEW, subject="ann", record_id=7) == PLAIN


def test_vault_encrypts_under_current_and_reads_previous() -> None:
    vault = TemplateVault(MasterKeyring(NEW, previous=[OLD]))
    blob = vault.encrypt(b"t", subject="ann", template_id=1)
    assert record_key_id(blob) == NEW.key_id
    assert vault.decrypt(BLOB, subject="ann", template_id=7) == PLAIN
    assert vault.keys.key_ids == sorted([OLD.key_id, NEW.key_id])


def test_master_key_parsing() -> None:
    assert MasterKey.from_base64(OLD.to_base64()) == OLD
    import base64

    assert MasterKey.from_base64(base64.b64encode(bytes(range(32))).decode()) == OLD
    with pytest.raises(KeyFileError, match="32 bytes, got 16"):
        MasterKey.from_base64(base64.b64encode(bytes(16)).decode())
    with pytest.raises(KeyFileError, match="base64"):
        MasterKey.from_base64("!!!")
