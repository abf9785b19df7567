"""Sealed payloads: the client encrypts each payload to the server's public key with HPKE.

HPKE (RFC 9180) in base mode through the ``hpke`` package, suite DHKEM(P-256, HKDF-SHA256),
HKDF-SHA256, AES-128-GCM: the only DHKEM that package offers is over the NIST curves (it has
no X25519); the suite ids are in every sealed blob, so another suite can be added without
ambiguity. Layout::

    magic "FOBS" | version u8 | kem u16 | kdf u16 | aead u16 | key id (8 bytes)
    | enc (65 bytes, the ephemeral public key) | ciphertext and 16-byte tag

The header is authenticated with the caller's associated data (a request
:class:`~faceobfuscator.security.binding.Binding`), so nothing in the blob can be changed
and nothing can be moved to another request without :func:`open_sealed` failing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from collections.abc import Iterable
from pathlib import Path

import hpke
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import KeyFileError, KeyPinError, SealError

__all__ = [
    "ServerPublicKey",
    "ServerKeyPair",
    "seal",
    "open_sealed",
    "sealed_size",
    "pin_server_key",
    "SEAL_OVERHEAD",
]

_SUITE = hpke.Suite__DHKEM_P256_HKDF_SHA256__HKDF_SHA256__AES_128_GCM
_INFO = b"faceobfuscator sealed payload v1"
_MAGIC = b"FOBS"
_VERSION = 1
_HEADER = struct.Struct(">4sBHHH8s")
_ENC = 65  # uncompressed P-256 point
_TAG = 16
_PUBLIC_RAW = 65

#: Bytes a sealed payload adds to its plaintext.
SEAL_OVERHEAD = _HEADER.size + _ENC + _TAG


def sealed_size(n: int) -> int:
    """Bytes of the sealed form of an ``n``-byte payload."""
    return n + SEAL_OVERHEAD


class ServerPublicKey:
    """The server's public sealing key: an uncompressed P-256 point (65 bytes).

    ``fingerprint`` is the SHA-256 of those bytes (hex); ``key_id``, its first 16 digits,
    names the key inside each sealed blob.
    """

    def __init__(self, raw: bytes) -> None:
        raw = bytes(raw)
        if len(raw) != _PUBLIC_RAW:
            raise KeyFileError(
                f"a server public key is {_PUBLIC_RAW} bytes (uncompressed P-256), got {len(raw)}"
            )
        try:
            self._key = _SUITE.KEM.decode_public_key(raw)
        except ValueError:
            raise KeyFileError("the server public key is not a valid P-256 point") from None
        self.raw = raw
        self.fingerprint = hashlib.sha256(raw).hexdigest()
        self.key_id = self.fingerprint[:16]

    @classmethod
    def from_base64(cls, text: str) -> ServerPublicKey:
        """Parse the base64url form that ``/v1/protocol`` publishes."""
        try:
            raw = _b64decode(text)
        except ValueError:
            raise KeyFileError("the server public key is not valid base64url") from None
        return cls(raw)

    def to_base64(self) -> str:
        return base64.urlsafe_b64encode(self.raw).rstrip(b"=").decode()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerPublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"ServerPublicKey(key_id={self.key_id!r})"


class ServerKeyPair:
    """The server's sealing key pair. Keep the private key file at mode 0600."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise KeyFileError("the server key must be a P-256 (secp256r1) private key")
        self._private = private_key
        self.public_key = ServerPublicKey(
            private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @classmethod
    def generate(cls) -> ServerKeyPair:
        """A fresh key pair from the operating system's secure source."""
        return cls(_SUITE.KEM.generate_private_key())

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    @property
    def fingerprint(self) -> str:
        return self.public_key.fingerprint

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the private key (PKCS#8 PEM) to ``path``, readable by the owner only."""
        path = Path(path)
        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if path.exists() and not overwrite:
            raise KeyFileError(f"{path} exists; pass overwrite=True to replace the server key")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask may only have narrowed it
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> ServerKeyPair:
        """Read a key saved by :meth:`save`; refuse a file that group or others can read."""
        path = Path(path)
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            raise KeyFileError(
                f"server key file {path} does not exist; make one with `faceobf keys new`"
            ) from None
        if mode & 0o077:
            raise KeyFileError(
                f"server key file {path} has mode {mode:o}: group or others can read it; "
                f"run `chmod 600 {path}` and rotate the key if it may have been copied"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError):
            raise KeyFileError(f"{path} does not hold an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not a P-256 key")
        return cls(key)

    def __repr__(self) -> str:
        return f"ServerKeyPair(key_id={self.key_id!r})"


def seal(payload: bytes, public_key: ServerPublicKey, *, aad: bytes) -> bytes:
    """Encrypt ``payload`` to ``public_key``, bound to ``aad`` (see :func:`open_sealed`)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
    if not isinstance(public_key, ServerPublicKey):
        raise TypeError(f"public_key must be a ServerPublicKey, got {type(public_key).__name__}")
    header = _header(bytes.fromhex(public_key.key_id))
    enc, ciphertext = _SUITE.seal(public_key._key, _INFO, header + bytes(aad), bytes(payload))
    return header + enc + ciphertext


def open_sealed(
    blob: bytes, private_key: ServerKeyPair | Iterable[ServerKeyPair], *, aad: bytes
) -> bytes:
    """Decrypt a sealed payload with the server key it names.

    ``private_key`` may be several key pairs (the current one and those being retired).
    Raises :class:`SealError` if the blob is malformed, sealed to a key not given, tampered
    with, or sealed with other associated data.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise SealError(f"a sealed payload must be bytes, got {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < SEAL_OVERHEAD:
        raise SealError(
            f"sealed payload is {len(blob)} bytes, shorter than the {SEAL_OVERHEAD}-byte "
            "sealing overhead"
        )
    magic, version, kem, kdf, aead, key_id = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        raise SealError("not a sealed FaceObfuscator payload (bad magic)")
    if (version, kem, kdf, aead) != (_VERSION, _SUITE.KEM.ID, _SUITE.KDF.ID, _SUITE.AEAD.ID):
        raise SealError(
            f"sealed payload uses version {version} and HPKE suite "
            f"({kem:#06x}, {kdf:#06x}, {aead:#06x}); this server speaks version {_VERSION}, "
            f"suite ({_SUITE.KEM.ID:#06x}, {_SUITE.KDF.ID:#06x}, {_SUITE.AEAD.ID:#06x})"
        )
    pairs = [private_key] if isinstance(private_key, ServerKeyPair) else list(private_key)
    wanted = key_id.hex()
    match = [p for p in pairs if hmac.compare_digest(p.key_id, wanted)]
    if not match:
        raise SealError(
            f"payload is sealed to server key {wanted}, which this server does not hold "
            f"(it holds {sorted(p.key_id for p in pairs)}); fetch /v1/protocol and seal again"
        )
    enc = blob[_HEADER.size : _HEADER.size + _ENC]
    ciphertext = blob[_HEADER.size + _ENC :]
    try:
        return _SUITE.open(
            enc, match[0]._private, _INFO, blob[: _HEADER.size] + bytes(aad), ciphertext
        )
    except (InvalidTag, ValueError):
        raise SealError(
            "sealed payload does not authenticate: it was tampered with, or it was sealed "
            "for another challenge, operation, subject, protocol or format version"
        ) from None


def pin_server_key(
    key: ServerPublicKey, pinned_fingerprint: str | None, *, allow_change: bool = False
) -> ServerPublicKey:
    """Return ``key`` if its fingerprint is the pinned one (or nothing is pinned).

    Raises :class:`KeyPinError` when the fingerprints differ, unless ``allow_change``: a
    changed key is either a rotation the operator announced or an impostor server.
    """
    if pinned_fingerprint is None:
        return key
    pin = pinned_fingerprint.strip().lower().replace(":", "")
    if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise KeyPinError(
            "the pinned server key fingerprint must be 64 hex digits (SHA-256 of the key), "
            "as `faceobf keys show` prints it"
        )
    if hmac.compare_digest(pin, key.fingerprint) or allow_change:
        return key
    raise KeyPinError(
        f"the server presents key {key.fingerprint}, not the pinned {pin}; if the operator "
        "rotated the key, check the new fingerprint out of band and update the pin "
        "(or pass allow_key_change=True)"
    )


def _header(key_id: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, _VERSION, _SUITE.KEM.ID, _SUITE.KDF.ID, _SUITE.AEAD.ID, key_id)


def _b64decode(text: str) -> bytes:
    # either alphabet, padding optional; anything else is an error, not silently dropped
    t = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
