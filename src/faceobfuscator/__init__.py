"""FaceObfuscator: privacy-preserving face recognition with gradient-descent-resistant
frequency features (USENIX Security 2024)."""

from .config import FORMAT_VERSION, ProtocolConfig
from .errors import (
    ConfigError,
    FaceObfuscatorError,
    ImageError,
    InputError,
    NoFaceError,
    PayloadError,
)
from .features import normalised_features, protect_faces
from .frequency import fast_transform, inverse_transform, reference_transform, to_greyscale
from .obfuscation import obfuscate, recover, secure_generator, self_normalise
from .payload import Payload, decode_payload, encode_payload
from .protect import protect_aligned, protect_photo

__all__ = [
    "FORMAT_VERSION",
    "ProtocolConfig",
    "ConfigError",
    "FaceObfuscatorError",
    "ImageError",
    "InputError",
    "NoFaceError",
    "PayloadError",
    "normalised_features",
    "protect_faces",
    "fast_transform",
    "inverse_transform",
    "reference_transform",
    "to_greyscale",
    "obfuscate",
    "recover",
    "secure_generator",
    "self_normalise",
    "Payload",
    "decode_payload",
    "encode_payload",
    "protect_aligned",
    "protect_photo",
    "Client",
]


def __getattr__(name: str):
    # the SDK pulls in an HTTP client: load it only when asked for
    if name == "Client":
        from .sdk import Client

        return Client
    raise AttributeError(f"module 'faceobfuscator' has no attribute {name!r}")
