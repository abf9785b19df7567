"""Freshness: single-use, short-lived challenges that sealed payloads are bound to.

The server issues a random 128-bit challenge for one operation on one subject; a request
carrying it is accepted at most once, before the challenge expires. Consumption is one
atomic ``UPDATE ... WHERE used_at IS NULL RETURNING`` statement, so when several API
processes share one PostgreSQL database, exactly one of any number of concurrent attempts
wins. Every attempt burns the challenge, even one that then fails for expiry or mismatch:
a challenge that has been shown to the server once is never good again.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Protocol

from faceobfuscator.errors import (
    ChallengeExpiredError,
    ChallengeMismatchError,
    ChallengeUsedError,
    InputError,
    UnknownChallengeError,
)
from faceobfuscator.protocol.binding import operation_problems
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.server.security.sql import Transactions, create_schema, placeholders

__all__ = ["Challenge", "ChallengeStore", "SQLChallengeStore", "ChallengeService"]

_ID = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA = {
    "sqlite": """
CREATE TABLE IF NOT EXISTS challenges (
    id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    subject TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE INDEX IF NOT EXISTS challenges_expiry ON challenges(expires_at)
""",
    "postgresql": """
CREATE TABLE IF NOT EXISTS challenges (
    id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    subject TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    used_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS challenges_expiry ON challenges(expires_at)
""",
}


class ChallengeStore(Protocol):
    """Where challenges live between issue and use."""

    def put(self, challenge: Challenge) -> None:
        """Record a newly issued challenge."""
        ...

    def take(self, challenge_id: str, *, now: float) -> Challenge | None:
        """Atomically mark the challenge used and return it, or return None if it is
        unknown or was already used."""
        ...

    def exists(self, challenge_id: str) -> bool:
        """Whether the challenge is known (used or not)."""
        ...

    def purge(self, *, before: float) -> int:
        """Forget challenges that expired before ``before``; returns how many."""
        ...


class SQLChallengeStore:
    """Challenges in the ``challenges`` table of a SQLite or PostgreSQL database."""

    def __init__(self, db: Transactions) -> None:
        self._db = db
        create_schema(db, _SCHEMA)

    def put(self, challenge: Challenge) -> None:
        with self._db.write() as cur:
            cur.execute(
                placeholders(
                    self._db,
                    "INSERT INTO challenges (id, operation, subject, expires_at) "
                    "VALUES (?, ?, ?, ?)",
                ),
                (challenge.id, challenge.operation, challenge.subject, challenge.expires_at),
            )

    def take(self, challenge_id: str, *, now: float) -> Challenge | None:
        with self._db.write() as cur:
            cur.execute(
                placeholders(
                    self._db,
                    "UPDATE challenges SET used_at = ? WHERE id = ? AND used_at IS NULL "
                    "RETURNING operation, subject, expires_at",
                ),
                (now, challenge_id),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return Challenge(challenge_id, row[0], row[1], float(row[2]))

    def exists(self, challenge_id: str) -> bool:
        with self._db.read() as cur:
            cur.execute(
                placeholders(self._db, "SELECT 1 FROM challenges WHERE id = ?"), (challenge_id,)
            )
            return cur.fetchone() is not None

    def purge(self, *, before: float) -> int:
        with self._db.write() as cur:
            cur.execute(
                placeholders(self._db, "DELETE FROM challenges WHERE expires_at < ?"), (before,)
            )
            return int(cur.rowcount)


class ChallengeService:
    """Issue and consume challenges.

    Args:
        store: where challenges live; share one database between API processes.
        ttl_s: how long a challenge stays good after it is issued.
        retain_s: how long an expired challenge is remembered, so that a late replay is
            reported as used or expired rather than unknown (it is refused either way).
        clock: seconds since the epoch; API processes sharing a store need synchronised
            clocks (NTP).
    """

    def __init__(
        self,
        store: ChallengeStore,
        *,
        ttl_s: float = 120.0,
        retain_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not ttl_s > 0 or not retain_s >= 0:
            raise InputError(f"ttl_s={ttl_s} must be > 0 and retain_s={retain_s} >= 0")
        self.store = store
        self.ttl_s = float(ttl_s)
        self.retain_s = float(retain_s)
        self._clock = clock
        self._next_purge = 0.0
        self._lock = threading.Lock()

    def issue(self, operation: str, subject: str = "") -> Challenge:
        """A fresh challenge for ``operation`` on ``subject`` (empty for identify)."""
        problems = operation_problems(operation, subject)
        if problems:
            raise InputError("cannot issue a challenge:\n  - " + "\n  - ".join(problems))
        now = self._clock()
        self._maybe_purge(now)
        challenge = Challenge(secrets.token_hex(16), operation, subject, now + self.ttl_s)
        self.store.put(challenge)
        return challenge

    def consume(self, challenge_id: str, operation: str, subject: str = "") -> Challenge:
        """Use the challenge once for ``operation`` on ``subject``.

        Raises :class:`UnknownChallengeError`, :class:`ChallengeUsedError`,
        :class:`ChallengeExpiredError` or :class:`ChallengeMismatchError` (all
        :class:`ChallengeError`, a ``ValueError``).
        """
        if not isinstance(challenge_id, str) or not _ID.match(challenge_id):
            raise UnknownChallengeError(
                "malformed challenge id: expected 32 lowercase hex digits from /v1/challenge"
            )
        now = self._clock()
        found = self.store.take(challenge_id, now=now)
        if found is None:
            if self.store.exists(challenge_id):
                raise ChallengeUsedError(
                    "challenge was already used; request a new challenge for each request"
                )
            raise UnknownChallengeError(
                "unknown challenge: this server did not issue it, or it expired long ago; "
                "request a new one"
            )
        if found.expires_at <= now:
            raise ChallengeExpiredError(
                f"challenge expired {now - found.expires_at:.1f} s ago (challenges last "
                f"{self.ttl_s:g} s); request a new one just before sending"
            )
        if found.operation != operation:
            raise ChallengeMismatchError(
                f"challenge was issued for {found.operation!r}, not {operation!r}; "
                "it is now spent, request a new one"
            )
        if found.subject != subject:
            raise ChallengeMismatchError(
                "challenge was issued for another subject; it is now spent, request a new one"
            )
        return found

    def _maybe_purge(self, now: float) -> None:
        with self._lock:
            if now < self._next_purge:
                return
            self._next_purge = now + min(self.ttl_s, 60.0)
        self.store.purge(before=now - self.retain_s)
