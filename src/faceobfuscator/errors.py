"""The project's exceptions: one root, and input errors that are also ``ValueError``."""

from __future__ import annotations

__all__ = [
    "FaceObfuscatorError",
    "InputError",
    "ConfigError",
    "PayloadError",
    "ImageError",
    "NoFaceError",
]


class FaceObfuscatorError(Exception):
    """Root of every error this package raises on purpose."""


class InputError(FaceObfuscatorError, ValueError):
    """Something handed to a public entry point is not what it accepts."""


class ConfigError(InputError):
    """A protocol or run configuration is invalid."""


class PayloadError(InputError):
    """Bytes that claim to be a payload are not a valid one for this protocol."""


class ImageError(InputError):
    """An image could not be decoded or has an unusable shape."""


class NoFaceError(InputError):
    """No face was found in an image."""
