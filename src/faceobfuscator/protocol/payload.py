"""The versioned binary payload: what leaves the client.

Layout (little-endian)::

    magic      4 bytes  b"FOBF"
    version    uint16   format version
    dtype      uint8    1 = float32
    ndim       uint8    number of dimensions (3)
    hash       32 bytes SHA-256 of the protocol configuration
    shape      ndim x uint32
    body       prod(shape) x float32

Decoding checks every field against the expected protocol and raises :class:`PayloadError`
naming the first problem; it never returns a partial object.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from faceobfuscator.errors import PayloadError
from faceobfuscator.protocol.config import ProtocolConfig

__all__ = [
    "PAYLOAD_MEDIA_TYPE",
    "SEALED_MEDIA_TYPE",
    "MAGIC",
    "Payload",
    "encode_payload",
    "decode_payload",
    "payload_size",
]

#: the Content-Type of a plain payload in a request body
PAYLOAD_MEDIA_TYPE = "application/octet-stream"
#: the Content-Type of a payload sealed to the server's key
SEALED_MEDIA_TYPE = "application/vnd.faceobfuscator.sealed"

MAGIC = b"FOBF"
_FIXED = struct.Struct("<4sHBB32s")
_DTYPES = {1: np.dtype("<f4")}
_MAX_NDIM = 4


@dataclass(frozen=True)
class Payload:
    """A decoded payload: its header fields and the feature (read-only float32)."""

    version: int
    config_hash: str
    feature: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.feature.shape)


def payload_size(config: ProtocolConfig) -> int:
    """Bytes of a payload for ``config``."""
    shape = config.feature_shape
    return _FIXED.size + 4 * len(shape) + 4 * int(np.prod(shape))


def encode_payload(feature: np.ndarray, config: ProtocolConfig) -> bytes:
    """Serialise one obfuscated feature ``config.feature_shape`` float32."""
    arr = np.asarray(feature)
    if tuple(arr.shape) != config.feature_shape:
        raise PayloadError(
            f"feature has shape {tuple(arr.shape)}, expected {config.feature_shape} for this protocol"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise PayloadError(f"feature dtype is {arr.dtype}, expected float32")
    arr32 = arr.astype("<f4", copy=False)
    if not np.isfinite(arr32).all():
        raise PayloadError("feature holds NaN or infinite values; nothing was encoded")
    head = _FIXED.pack(MAGIC, config.format_version, 1, arr32.ndim, bytes.fromhex(config.hash))
    return head + struct.pack(f"<{arr32.ndim}I", *arr32.shape) + arr32.tobytes()


def decode_payload(data: bytes, config: ProtocolConfig) -> Payload:
    """Parse and validate a payload for ``config``; raise :class:`PayloadError` otherwise."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PayloadError(f"payload must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _FIXED.size:
        raise PayloadError(
            f"payload is {len(data)} bytes, shorter than its {_FIXED.size}-byte header"
        )
    magic, version, dtype_code, ndim, digest = _FIXED.unpack_from(data)
    if magic != MAGIC:
        raise PayloadError(f"not a FaceObfuscator payload (magic {magic!r}, expected {MAGIC!r})")
    if version != config.format_version:
        raise PayloadError(
            f"payload format version {version} is not supported; this server speaks "
            f"{config.format_version}. Update the client or the server so both match."
        )
    if dtype_code not in _DTYPES:
        raise PayloadError(f"unknown dtype code {dtype_code}; expected 1 (float32)")
    if not 1 <= ndim <= _MAX_NDIM:
        raise PayloadError(f"payload declares {ndim} dimensions; expected 3")
    if digest.hex() != config.hash:
        raise PayloadError(
            "payload was made under another protocol configuration (hash mismatch); "
            "fetch the server's protocol and protect the image again"
        )
    shape_end = _FIXED.size + 4 * ndim
    if len(data) < shape_end:
        raise PayloadError("payload is truncated inside its shape field")
    shape = struct.unpack_from(f"<{ndim}I", data, _FIXED.size)
    if tuple(shape) != config.feature_shape:
        raise PayloadError(f"payload shape {tuple(shape)}, expected {config.feature_shape}")
    dtype = _DTYPES[dtype_code]
    expected = shape_end + dtype.itemsize * int(np.prod(shape))
    if len(data) != expected:
        raise PayloadError(f"payload is {len(data)} bytes, expected exactly {expected}")
    feature = np.frombuffer(data, dtype=dtype, offset=shape_end).reshape(shape).astype(np.float32)
    if not np.isfinite(feature).all():
        raise PayloadError("payload holds NaN or infinite values")
    feature.setflags(write=False)
    return Payload(version=version, config_hash=digest.hex(), feature=feature)
