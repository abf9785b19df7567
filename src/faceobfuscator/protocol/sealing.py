"""Sealed payloads: the client encrypts each payload to the server's public key with HPKE.

HPKE (RFC 9180) in base mode through the ``pyhpke`` package (built on ``cryptography``),
suite DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM. The suite ids are in every
sealed blob, so another suite can be added without ambiguity. Layout::

    magic "FOBS" | version u8 | kem u16 | kdf u16 | aead u16 | key id (8 bytes)
    | enc (32 bytes, the ephemeral X25519 public key) | ciphertext and 16-byte tag

The server's private key is an X25519 key, saved as unencrypted PKCS#8 PEM; its public key
is the raw 32-byte X25519 encoding.

The header is authenticated with the caller's associated data (a request
:class:`~faceobfuscator.protocol.binding.Binding`), so nothing in the blob can be changed
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

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, PyHPKEError

from faceobfuscator.errors import KeyFileError, KeyPinError, SealError

__all__ = [
    "SUITE_NAME",
    "ServerPublicKey",
    "ServerKeyPair",
    "seal",
    "open_sealed",
    "sealed_size",
    "pin_server_key",
    "SEAL_OVERHEAD",
]

#: The HPKE suite of sealed payloads, as ``/v1/protocol`` names it.
SUITE_NAME = "HPKE base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM"

_SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES128_GCM)
_SUITE_IDS = (_SUITE.kem.id.value, _SUITE.kdf.id.value, _SUITE.aead.id.value)
_INFO = b"faceobfuscator sealed payload v1"
_MAGIC = b"FOBS"
_VERSION = 1
_HEADER = struct.Struct(">4sBHHH8s")
_ENC = 32  # the ephemeral X25519 public key
_TAG = 16
_PUBLIC_RAW = 32

#: Bytes a sealed payload adds to its plaintext.
SEAL_OVERHEAD = _HEADER.size + _ENC + _TAG


def sealed_size(n: int) -> int:
    """Bytes of the sealed form of an ``n``-byte payload."""
    return n + SEAL_OVERHEAD


class ServerPublicKey:
    """The server's public sealing key: a raw X25519 public key (32 bytes).

    ``fingerprint`` is the SHA-256 of those bytes (hex); ``key_id``, its first 16 digits,
    names the key inside each sealed blob.
    """

    def __init__(self, raw: bytes) -> None:
        raw = bytes(raw)
        if len(raw) != _PUBLIC_RAW:
            raise KeyFileError(
                f"a server public key is {_PUBLIC_RAW} bytes (raw X25519), got {len(raw)}"
            )
        public = X25519PublicKey.from_public_bytes(raw)
        try:
            # a low-order point gives an all-zero shared secret, which cryptography refuses;
            # find that here rather than on the first seal
            X25519PrivateKey.generate().exchange(public)
        except ValueError:
            raise KeyFileError(
                "the server public key is not a valid X25519 key (a low-order point)"
            ) from None
        self._key = KEMKey.from_pyca_cryptography_key(public)
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

    def __init__(self, private_key: X25519PrivateKey) -> None:
        if not isinstance(private_key, X25519PrivateKey):
            raise KeyFileError("the server key must be an X25519 private key")
        self._private = private_key
        self._kem_key = KEMKey.from_pyca_cryptography_key(private_key)
        self.public_key = ServerPublicKey(
            private_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        )

    @classmethod
    def generate(cls) -> ServerKeyPair:
        """A fresh key pair from the operating system's secure source."""
        return cls(X25519PrivateKey.generate())

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
                f"server key file {path} does not exist; make one with `faceobf keys new-server`"
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
        if not isinstance(key, X25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not an X25519 key")
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
    # pyhpke's single-shot CipherSuite.seal is unimplemented; a context used once is the same
    enc, sender = _SUITE.create_sender_context(public_key._key, info=_INFO)
    ciphertext = sender.seal(bytes(payload), aad=header + bytes(aad))
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
    if (version, kem, kdf, aead) != (_VERSION, *_SUITE_IDS):
        ours = ", ".join(f"{i:#06x}" for i in _SUITE_IDS)
        raise SealError(
            f"sealed payload uses version {version} and HPKE suite "
            f"({kem:#06x}, {kdf:#06x}, {aead:#06x}); this server speaks version {_VERSION}, "
            f"suite ({ours})"
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
        recipient = _SUITE.create_recipient_context(enc, match[0]._kem_key, info=_INFO)
        return recipient.open(ciphertext, aad=blob[: _HEADER.size] + bytes(aad))
    except (PyHPKEError, ValueError):
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
    return _HEADER.pack(_MAGIC, _VERSION, *_SUITE_IDS, key_id)


def _b64decode(text: str) -> bytes:
    # either alphabet, padding optional; anything else is an error, not silently dropped
    t = text.strip().replace("-", "+").replace("_", "/").rstrip("=")
    return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
