"""Errors of the recognition server. Each maps to one HTTP status (see ``app.py``); their
messages name what was wrong and never hold payloads, embeddings or keys."""

from __future__ import annotations

from ..errors import FaceObfuscatorError, InputError, PayloadError

__all__ = [
    "UnknownSubjectError",
    "SubjectExistsError",
    "NoTemplatesError",
    "UnknownTemplateError",
    "PayloadTooLargeError",
    "StorageError",
    "ModelMismatchError",
]


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


class ModelMismatchError(FaceObfuscatorError):
    """The model cannot serve this gallery (another protocol or an unsupported scheme)."""
