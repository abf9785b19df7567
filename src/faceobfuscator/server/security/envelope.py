"""Envelope encryption of stored records (templates) under a master key from the settings.

Each record gets its own random 256-bit data key. The record is encrypted with AES-256-GCM
under that data key, authenticated together with its subject and record id, so a row moved
to another subject or another id no longer decrypts. The data key is wrapped (AES-256-GCM)
by the master key and stored in the record's own blob, next to the master key's id::

    magic "FOBE" | version u8 | master key id (8 bytes)
    | wrap nonce (12) | wrapped data key (32 + 16 tag)
    | data nonce (12) | ciphertext and 16-byte tag

Rotating the master key re-wraps 48 bytes per record and leaves the ciphertext alone
(:func:`rewrap_record`), or re-encrypts under a fresh data key when a data key may have
leaked (:func:`reencrypt_record`). Deleting the row destroys its data key with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from faceobfuscator.errors import EnvelopeError, KeyFileError

__all__ = [
    "MasterKey",
    "MasterKeyring",
    "TemplateVault",
    "encrypt_record",
    "decrypt_record",
    "rewrap_record",
    "reencrypt_record",
    "record_key_id",
    "is_envelope",
    "key_prefix",
    "ENVELOPE_OVERHEAD",
]

_MAGIC = b"FOBE"
_VERSION = 1
_HEADER = struct.Struct(">4sB8s")
_NONCE = 12
_KEY = 32
_TAG = 16
_WRAPPED = _KEY + _TAG
_BODY = _HEADER.size + _NONCE + _WRAPPED + _NONCE

#: Bytes an encrypted record adds to its plaintext.
ENVELOPE_OVERHEAD = _BODY + _TAG


class MasterKey:
    """A 256-bit master key. ``key_id`` (16 hex digits) is an HMAC of the key, so it names
    the key without revealing it."""

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != _KEY:
            n = len(key) if isinstance(key, bytes) else type(key).__name__
            raise KeyFileError(f"a master key is {_KEY} bytes, got {n}")
        self._aead = AESGCM(key)
        self._raw = key
        self.key_id = hmac.new(key, b"faceobfuscator master key id", hashlib.sha256).hexdigest()[
            :16
        ]

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh key from the operating system's secure source."""
        return cls(secrets.token_bytes(_KEY))

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        """Parse the base64 (standard or url-safe, padding optional) form the settings hold."""
        text = text.strip()
        try:
            raw = _b64decode(text)
        except ValueError:
            raise KeyFileError("the master key is not valid base64") from None
        return cls(raw)

    def to_base64(self) -> str:
        return base64.urlsafe_b64encode(self._raw).rstrip(b"=").decode()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MasterKey) and hmac.compare_digest(other._raw, self._raw)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"


class MasterKeyring:
    """The current master key, which encrypts, and previous ones still accepted for
    decryption while a rotation runs."""

    def __init__(self, current: MasterKey, *, previous: Iterable[MasterKey] = ()) -> None:
        self.current = current
        self._keys = {k.key_id: k for k in (*previous, current)}

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def get(self, key_id: str) -> MasterKey | None:
        return self._keys.get(key_id)


def key_prefix(master: MasterKey) -> bytes:
    """The bytes every record encrypted or re-wrapped under ``master`` starts with."""
    return _HEADER.pack(_MAGIC, _VERSION, bytes.fromhex(master.key_id))


def is_envelope(blob: bytes) -> bool:
    """Whether ``blob`` looks like an encrypted record (rather than a plain payload)."""
    return bytes(blob[: len(_MAGIC)]) == _MAGIC


def record_key_id(blob: bytes) -> str:
    """The id of the master key that wraps ``blob``'s data key."""
    _check_shape(blob)
    return _HEADER.unpack_from(blob)[2].hex()


def encrypt_record(plaintext: bytes, master: MasterKey, *, subject: str, record_id: int) -> bytes:
    """Encrypt one record under a fresh data key wrapped by ``master``."""
    data_key = secrets.token_bytes(_KEY)
    return _wrap(master, data_key) + _seal_data(data_key, plaintext, subject, record_id)


def decrypt_record(
    blob: bytes, keys: MasterKey | MasterKeyring, *, subject: str, record_id: int
) -> bytes:
    """Decrypt a record of ``subject`` stored under ``record_id``.

    Raises :class:`EnvelopeError` if its master key is not in ``keys``, or the blob was
    altered or belongs to another subject or record.
    """
    data_key = _unwrap(blob, keys)
    nonce = blob[_BODY - _NONCE : _BODY]
    try:
        return AESGCM(data_key).decrypt(nonce, blob[_BODY:], _data_aad(subject, record_id))
    except InvalidTag:
        raise EnvelopeError(
            f"record {record_id} does not decrypt: it was altered, or it belongs to another "
            "subject or record"
        ) from None


def rewrap_record(blob: bytes, old: MasterKey | MasterKeyring, new: MasterKey) -> bytes:
    """The same record with its data key wrapped by ``new`` instead; the ciphertext is
    unchanged."""
    return _wrap(new, _unwrap(blob, old)) + blob[_HEADER.size + _NONCE + _WRAPPED :]


def reencrypt_record(
    blob: bytes, old: MasterKey | MasterKeyring, new: MasterKey, *, subject: str, record_id: int
) -> bytes:
    """The same record encrypted afresh under a new data key wrapped by ``new``."""
    plaintext = decrypt_record(blob, old, subject=subject, record_id=record_id)
    return encrypt_record(plaintext, new, subject=subject, record_id=record_id)


class TemplateVault:
    """Encrypts templates under the keyring's current master key and decrypts them under
    any of its keys."""

    def __init__(self, keys: MasterKeyring | MasterKey) -> None:
        self.keys = keys if isinstance(keys, MasterKeyring) else MasterKeyring(keys)

    def encrypt(self, plaintext: bytes, *, subject: str, template_id: int) -> bytes:
        return encrypt_record(plaintext, self.keys.current, subject=subject, record_id=template_id)

    def decrypt(self, blob: bytes, *, subject: str, template_id: int) -> bytes:
        return decrypt_record(blob, self.keys, subject=subject, record_id=template_id)


def _wrap(master: MasterKey, data_key: bytes) -> bytes:
    header = key_prefix(master)
    nonce = secrets.token_bytes(_NONCE)
    return header + nonce + master._aead.encrypt(nonce, data_key, b"FOBE-DEK" + header)


def _unwrap(blob: bytes, keys: MasterKey | MasterKeyring) -> bytes:
    _check_shape(blob)
    key_id = _HEADER.unpack_from(blob)[2].hex()
    master = keys.get(key_id) if isinstance(keys, MasterKeyring) else keys
    if master is None or master.key_id != key_id:
        held = keys.key_ids if isinstance(keys, MasterKeyring) else [keys.key_id]
        raise EnvelopeError(
            f"record is encrypted under master key {key_id}, which is not configured "
            f"(configured: {held}); set the key it was written with, or finish the rotation"
        )
    header = blob[: _HEADER.size]
    nonce = blob[_HEADER.size : _HEADER.size + _NONCE]
    wrapped = blob[_HEADER.size + _NONCE : _HEADER.size + _NONCE + _WRAPPED]
    try:
        return master._aead.decrypt(nonce, wrapped, b"FOBE-DEK" + header)
    except InvalidTag:
        raise EnvelopeError(
            f"the data key of a record under master key {key_id} does not unwrap: "
            "the record was altered"
        ) from None


def _seal_data(data_key: bytes, plaintext: bytes, subject: str, record_id: int) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(data_key).encrypt(nonce, bytes(plaintext), _data_aad(subject, record_id))


def _data_aad(subject: str, record_id: int) -> bytes:
    # length-prefixed so that no (subject, id) pair encodes like another
    s = subject.encode("utf-8")
    return (
        b"FOBE-DATA"
        + bytes([_VERSION])
        + struct.pack(">I", len(s))
        + s
        + struct.pack(">q", record_id)
    )


def _check_shape(blob: bytes) -> None:
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < ENVELOPE_OVERHEAD:
        raise EnvelopeError(
            f"a stored record must be at least {ENVELOPE_OVERHEAD} bytes of envelope; "
            "it is truncated, or it was stored in plain mode"
        )
    magic, version, _ = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != _VERSION:
        raise EnvelopeError(
            "a stored record is not an encrypted envelope of version "
            f"{_VERSION}: it is corrupt, or it was stored in plain mode (encrypt a plain "
            "gallery with `faceobf keys rotate --from-plain`)"
        )


def _b64decode(text: str) -> bytes:
    # either alphabet, padding optional; anything else is an error, not silently dropped
    t = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
