"""Gallery storage: the same operations on SQLite (embedded) and PostgreSQL (shared)."""

from __future__ import annotations

from faceobfuscator.server.storage.base import (
    ADD,
    DELETE,
    Change,
    SQLStorage,
    SubjectRecord,
    TemplateRef,
)

__all__ = [
    "ADD",
    "DELETE",
    "Change",
    "SQLStorage",
    "SubjectRecord",
    "TemplateRef",
    "open_storage",
]


def open_storage(url: str, *, synchronous: str = "FULL", pool_size: int = 4) -> SQLStorage:
    """Open the gallery at ``url``: ``sqlite:///path`` or ``postgresql://...``."""
    if url.startswith("sqlite:///"):
        from faceobfuscator.server.storage.sqlite import SQLiteStorage

        return SQLiteStorage(url[len("sqlite:///") :], synchronous=synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        from faceobfuscator.server.storage.postgres import PostgresStorage

        return PostgresStorage(url, pool_size=pool_size)
    raise ValueError("database URL must start with sqlite:/// or postgresql://")
