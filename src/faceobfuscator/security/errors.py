"""Errors of the security layer. Messages say what failed and what to do; they never hold
keys, plaintexts or ciphertexts."""

from __future__ import annotations

from ..errors import ConfigError, FaceObfuscatorError, InputError

__all__ = [
    "SecurityError",
    "SealError",
    "KeyFileError",
    "KeyPinError",
    "ChallengeError",
    "UnknownChallengeError",
    "ChallengeUsedError",
    "ChallengeExpiredError",
    "ChallengeMismatchError",
    "EnvelopeError",
    "RotationError",
]


class SecurityError(FaceObfuscatorError):
    """Root of the security layer's errors."""


class SealError(SecurityError, InputError):
    """A sealed payload does not open: tampered, sealed to another key, or bound to other
    associated data (challenge, operation, subject, protocol or format version)."""


class KeyFileError(SecurityError, ConfigError):
    """A key file or encoded key is unreadable, malformed or insecurely stored."""


class KeyPinError(SecurityError):
    """The server's published key is not the one the client has pinned."""


class ChallengeError(SecurityError, InputError):
    """A challenge cannot be consumed; the request that carried it is refused."""


class UnknownChallengeError(ChallengeError):
    """The server never issued this challenge, or forgot it long after it expired."""


class ChallengeUsedError(ChallengeError):
    """The challenge was already consumed once: a replay, or a client retrying a request."""


class ChallengeExpiredError(ChallengeError):
    """The challenge was not used before its expiry."""


class ChallengeMismatchError(ChallengeError):
    """The challenge was issued for another operation or subject."""


class EnvelopeError(SecurityError):
    """A stored record does not decrypt: another master key, tampering, or a row moved to
    another subject or template."""


class RotationError(SecurityError):
    """A master-key rotation cannot start or go on."""
