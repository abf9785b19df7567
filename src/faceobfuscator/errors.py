"""The project's whole exception tree: one root, input errors that are also ``ValueError``,
the security layer's errors and the server's (each maps to one HTTP status, see
``server/app.py``). Messages say what was wrong and what to do; they never hold keys,
payloads, embeddings or plaintexts."""

from __future__ import annotations

__all__ = [
    "FaceObfuscatorError",
    "InputError",
    "ConfigError",
    "PayloadError",
    "ImageError",
    "NoFaceError",
    "FaceQualityError",
    "MultipleFacesError",
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
    "UnknownSubjectError",
    "SubjectExistsError",
    "NoTemplatesError",
    "UnknownTemplateError",
    "PayloadTooLargeError",
    "StorageError",
    "StorageFullError",
    "ModelMismatchError",
    "APIError",
    "FormatError",
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


class FaceQualityError(NoFaceError):
    """A face was detected but its landmarks are not plausible enough to align it (cut off
    by the frame, too small, distorted, or a low detector score)."""


class MultipleFacesError(InputError):
    """A photo that must show one person shows several faces of similar size."""


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


class UnknownSubjectError(InputError):
    """No subject of that name is enrolled (HTTP 404)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no subject named {name!r}")
        self.name = name


class SubjectExistsError(InputError):
    """A subject of that name already exists (HTTP 409)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a subject named {name!r} already exists")
        self.name = name


class NoTemplatesError(InputError):
    """The subject exists but has no enrolled template to compare with (HTTP 409)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"subject {name!r} has no enrolled template; enrol one first")
        self.name = name


class UnknownTemplateError(InputError):
    """No template of that id belongs to the subject (HTTP 404)."""

    def __init__(self, name: str, template_id: int) -> None:
        super().__init__(f"subject {name!r} has no template {template_id}")


class PayloadTooLargeError(PayloadError):
    """The request body exceeds the server's payload-size limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"payload exceeds the limit of {limit} bytes")
        self.limit = limit


class StorageError(FaceObfuscatorError):
    """The gallery database cannot be opened or used (HTTP 503)."""


class StorageFullError(StorageError):
    """The gallery's disk is full: the write was rolled back and nothing of it was stored
    (HTTP 507). Writes succeed again, without a restart, once space is freed."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "the gallery's disk is full; nothing of this request was stored. Free space on "
            "the database's disk and retry" + (f" ({detail})" if detail else "")
        )


class ModelMismatchError(FaceObfuscatorError):
    """The model cannot serve this gallery (another protocol or an unsupported scheme)."""


class FormatError(InputError):
    """A file is not a valid instance of the format it claims."""


class APIError(FaceObfuscatorError):
    """The server refused a request.

    Attributes:
        status_code: the HTTP status.
        detail: the server's message.
    """

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"server answered {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
