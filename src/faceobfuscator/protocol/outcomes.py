"""Outcomes of enrolment and verification, as the server's service layer produces them
and the SDK hands them back to callers: one definition for both sides."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Enrolment", "Verification"]


@dataclass(frozen=True)
class Enrolment:
    subject: str
    template_id: int


@dataclass(frozen=True)
class Verification:
    subject: str
    score: float
    match: bool
    threshold: float
