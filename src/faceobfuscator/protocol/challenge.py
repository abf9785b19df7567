"""A challenge as client and server exchange it: sealed payloads are bound to one (the
server issues and consumes them, see :mod:`faceobfuscator.server.security.challenges`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Challenge"]


@dataclass(frozen=True)
class Challenge:
    """One issued challenge: ``id`` is 32 lowercase hex digits; ``expires_at`` is seconds
    since the epoch."""

    id: str
    operation: str
    subject: str
    expires_at: float
