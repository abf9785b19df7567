"""Outcomes of enrolment, verification and identification, as the server's service layer
produces them and the SDK hands them back to callers: one definition for both sides."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Candidate", "Enrolment", "FaceBox", "Identification", "Verification"]


@dataclass(frozen=True)
class FaceBox:
    """Which face of a photo a payload was made from (the SDK adds it to its answers; the
    server never sees the photo): the box ``(x, y, width, height)`` in pixels of the
    EXIF-rotated photo, and how many faces the detector found in it."""

    box: tuple[int, int, int, int]
    faces: int


@dataclass(frozen=True)
class Enrolment:
    subject: str
    template_id: int
    face: FaceBox | None = None


@dataclass(frozen=True)
class Verification:
    """``score`` is None when the server withholds scores from client keys."""

    subject: str
    score: float | None
    match: bool
    threshold: float
    face: FaceBox | None = None


@dataclass(frozen=True)
class Candidate:
    """One subject of an identification: its best cosine similarity, and whether that
    reaches the threshold (``score`` None when the server withholds scores)."""

    subject: str
    score: float | None
    match: bool


@dataclass(frozen=True)
class Identification:
    """Candidates best first, at the model's calibrated threshold."""

    candidates: list[Candidate]
    threshold: float
    face: FaceBox | None = None

    @property
    def best(self) -> Candidate | None:
        """The top candidate if it reaches the threshold."""
        if self.candidates and self.candidates[0].match:
            return self.candidates[0]
        return None

    @property
    def match(self) -> str | None:
        """The name of :attr:`best`, or None."""
        best = self.best
        return best.subject if best is not None else None

    def to_dict(self) -> dict[str, Any]:
        """The ``/v1/identify`` answer's shape: candidates, match, threshold; and the face
        the payload was made from when the SDK knows it."""
        out: dict[str, Any] = {
            "candidates": [asdict(c) for c in self.candidates],
            "match": self.match,
            "threshold": self.threshold,
        }
        if self.face is not None:
            out["face"] = asdict(self.face)
        return out
