"""FaceObfuscator: privacy-preserving face recognition with gradient-descent-resistant
frequency features (USENIX Security 2024).

The public names below load lazily, on first use: ``import faceobfuscator`` costs nothing,
and ``faceobf apikey`` never imports torch. The package's layout is described in
``docs/architecture.md``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faceobfuscator._lazy import lazy_getattr

#: public name -> the module that defines it
_EXPORTS = {
    "FORMAT_VERSION": "protocol.config",
    "ProtocolConfig": "protocol.config",
    "ConfigError": "errors",
    "FaceObfuscatorError": "errors",
    "ImageError": "errors",
    "InputError": "errors",
    "NoFaceError": "errors",
    "PayloadError": "errors",
    "normalised_features": "protocol.features",
    "protect_faces": "protocol.features",
    "fast_transform": "protocol.frequency",
    "inverse_transform": "protocol.frequency",
    "reference_transform": "protocol.frequency",
    "to_greyscale": "protocol.frequency",
    "obfuscate": "protocol.obfuscation",
    "recover": "protocol.obfuscation",
    "secure_generator": "protocol.obfuscation",
    "self_normalise": "protocol.obfuscation",
    "Payload": "protocol.payload",
    "decode_payload": "protocol.payload",
    "encode_payload": "protocol.payload",
    "protect_aligned": "client.protect",
    "protect_photo": "client.protect",
    "Client": "client.sdk",
}

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

if TYPE_CHECKING:
    from faceobfuscator.client.protect import protect_aligned, protect_photo
    from faceobfuscator.client.sdk import Client
    from faceobfuscator.errors import (
        ConfigError,
        FaceObfuscatorError,
        ImageError,
        InputError,
        NoFaceError,
        PayloadError,
    )
    from faceobfuscator.protocol.config import FORMAT_VERSION, ProtocolConfig
    from faceobfuscator.protocol.features import normalised_features, protect_faces
    from faceobfuscator.protocol.frequency import (
        fast_transform,
        inverse_transform,
        reference_transform,
        to_greyscale,
    )
    from faceobfuscator.protocol.obfuscation import (
        obfuscate,
        recover,
        secure_generator,
        self_normalise,
    )
    from faceobfuscator.protocol.payload import Payload, decode_payload, encode_payload


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
