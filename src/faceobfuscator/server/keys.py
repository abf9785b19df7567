"""API keys: random 32-byte secrets shown once; the server keeps only their SHA-256.

A key has the form ``fo_<base64url>``. The digest of a presented key is compared with every
stored digest in constant time (:func:`hmac.compare_digest`), so the time taken tells
nothing about which digest, or how much of one, matched.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable

__all__ = ["Role", "KeyRing", "new_api_key", "key_digest", "new_cache_key"]

_PREFIX = "fo_"


class Role(enum.Enum):
    ADMIN = "admin"
    CLIENT = "client"


def new_api_key() -> str:
    """A fresh API key from the operating system's secure source."""
    return _PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def new_cache_key() -> str:
    """A fresh 32-byte embedding-cache key, base64url (``FACEOBF_CACHE_KEY``)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def key_digest(key: str) -> str:
    """SHA-256 hex digest of a key: what the server's settings hold."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The stored key digests of each role."""

    def __init__(self, *, admin: Iterable[str] = (), client: Iterable[str] = ()) -> None:
        self._entries = [(bytes.fromhex(h), Role.ADMIN) for h in admin] + [
            (bytes.fromhex(h), Role.CLIENT) for h in client
        ]

    def __len__(self) -> int:
        return len(self._entries)

    def role_of(self, key: str) -> Role | None:
        """The role of ``key``, or None when it matches no stored digest."""
        presented = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: Role | None = None
        for digest, role in self._entries:  # no early exit: every digest is compared
            if hmac.compare_digest(presented, digest) and found is None:
                found = role
        return found
