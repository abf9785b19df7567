"""Request and response bodies of the REST API.

Payloads are not JSON: they travel as the raw request body with
``Content-Type: application/octet-stream`` (see ``deps.payload_body``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from faceobfuscator.protocol.names import subject_name
from faceobfuscator.protocol.payload import PAYLOAD_MEDIA_TYPE

__all__ = [
    "SubjectName",
    "ProtocolOut",
    "SealingOut",
    "ChallengeIn",
    "ChallengeOut",
    "HealthOut",
    "SubjectIn",
    "SubjectOut",
    "SubjectList",
    "TemplateOut",
    "TemplateList",
    "VerifyOut",
    "CandidateOut",
    "IdentifyOut",
    "ErrorOut",
]

#: A subject name, NFC-normalised and checked by :func:`faceobfuscator.protocol.names.
#: subject_name` (Unicode, 1-128 characters, no control characters or slashes); a refusal
#: is a 422 whose message says in words what is wrong.
SubjectName = Annotated[str, AfterValidator(subject_name)]


def _challenge_subject(value: str) -> str:
    return value if value == "" else subject_name(value)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class SealingOut(_Out):
    """How to seal payloads to this server (see ``faceobfuscator.protocol.sealing``)."""

    public_key: str = Field(description="base64url of the raw 32-byte X25519 public key")
    key_id: str = Field(description="first 16 hex digits of the fingerprint")
    fingerprint: str = Field(description="SHA-256 of the public key: pin it in clients")
    suite: str
    media_type: str
    required: bool = Field(description="plain payloads are refused")
    challenge_ttl_s: float


class ProtocolOut(_Out):
    """What a client needs to make payloads this server accepts."""

    config: dict[str, Any] = Field(description="the protocol configuration (ProtocolConfig)")
    config_hash: str = Field(description="SHA-256 of the configuration; every payload carries it")
    format_version: int
    payload_bytes: int = Field(description="exact size of one payload")
    payload_media_type: str = PAYLOAD_MEDIA_TYPE
    sealing: SealingOut | None = Field(
        default=None, description="present when the server accepts sealed payloads"
    )
    replay_protection: bool = Field(
        default=False,
        description="true only when sealed payloads are required. In plain mode a captured "
        "payload, or a leaked feature obfuscated again, is accepted like a fresh capture.",
    )


class ChallengeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: Literal["enroll", "verify", "identify"]
    subject: Annotated[str, AfterValidator(_challenge_subject)] = Field(
        default="", description="the subject to enrol or verify; empty for identify"
    )


class ChallengeOut(_Out):
    challenge: str = Field(description="single use: send it with one sealed payload")
    operation: str
    subject: str
    expires_at: float = Field(description="seconds since the epoch")


class HealthOut(_Out):
    status: str = Field(description="ok, or degraded when the gallery storage has a problem")
    storage: str = Field(
        default="ok",
        description="ok, or the storage problem (unreachable database, or a full disk since "
        "the last write that failed; it clears when a write succeeds again)",
    )
    model: str
    backend: str
    templates_indexed: int
    subjects_indexed: int
    index_digest: str = Field(
        description="SHA-256 of the sorted template ids in this process's index: equal "
        "across processes that agree"
    )
    index: str = Field(default="exact", description="exact, or the approximate index's kind")
    index_complete: bool = Field(
        default=True,
        description="false while templates without a cached embedding of the served model "
        "(a changed model) are embedded in the background: answers may miss them",
    )
    rebuild_done: int = Field(default=0, description="templates embedded by that rebuild")
    rebuild_total: int = Field(default=0, description="templates that rebuild embeds")


class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: SubjectName = Field(description="the subject's name")


class SubjectOut(_Out):
    subject: str
    created_at: datetime
    templates: int


class SubjectList(_Out):
    subjects: list[SubjectOut]
    total: int
    limit: int
    offset: int


class TemplateOut(_Out):
    subject: str
    template_id: int


class TemplateList(_Out):
    subject: str
    template_ids: list[int]


class VerifyOut(_Out):
    subject: str
    score: float | None = Field(
        description="best cosine similarity with the subject's templates; null when the "
        "server withholds scores from client keys"
    )
    match: bool = Field(description="score >= threshold")
    threshold: float


class CandidateOut(_Out):
    subject: str
    score: float | None = Field(description="null when scores are withheld")
    match: bool


class IdentifyOut(_Out):
    candidates: list[CandidateOut] = Field(description="best first")
    match: str | None = Field(description="the best candidate if it reaches the threshold")
    threshold: float


class ErrorOut(_Out):
    detail: str
