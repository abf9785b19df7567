"""Request and response bodies of the REST API.

Payloads are not JSON: they travel as the raw request body with
``Content-Type: application/octet-stream`` (see ``deps.payload_body``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SUBJECT_PATTERN",
    "ProtocolOut",
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

#: Subject names: 1-128 characters, letters, digits and ``. _ @ -``, starting with a letter
#: or digit (they appear in URLs).
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ProtocolOut(_Out):
    """What a client needs to make payloads this server accepts."""

    config: dict[str, Any] = Field(description="the protocol configuration (ProtocolConfig)")
    config_hash: str = Field(description="SHA-256 of the configuration; every payload carries it")
    format_version: int
    payload_bytes: int = Field(description="exact size of one payload")
    payload_media_type: str = "application/octet-stream"


class HealthOut(_Out):
    status: str
    model: str
    backend: str
    templates_indexed: int
    subjects_indexed: int
    index_digest: str = Field(
        description="SHA-256 of the sorted template ids in this process's index: equal "
        "across processes that agree"
    )


class SubjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: str = Field(pattern=SUBJECT_PATTERN, description="the subject's name")


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
    score: float = Field(description="best cosine similarity with the subject's templates")
    match: bool = Field(description="score >= threshold")
    threshold: float


class CandidateOut(_Out):
    subject: str
    score: float
    match: bool


class IdentifyOut(_Out):
    candidates: list[CandidateOut] = Field(description="best first")
    match: str | None = Field(description="the best candidate if it reaches the threshold")
    threshold: float


class ErrorOut(_Out):
    detail: str
