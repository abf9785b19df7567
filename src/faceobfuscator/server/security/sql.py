"""What the security stores need from a database: transactions and a dialect.

The gallery storage of :mod:`faceobfuscator.server.storage` provides the same thing, so the
challenge and envelope stores share its database (SQLite file or PostgreSQL).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["Transactions", "DIALECTS"]

DIALECTS = ("sqlite", "postgresql")
_SCHEMA_LOCK = 0x464F5345  # any fixed 64-bit number


class Transactions(Protocol):
    """A database the security stores can run statements in.

    ``write()`` and ``read()`` each open one transaction and yield a DB-API cursor; the
    transaction commits when the block ends and rolls back if it raises. Statements use
    ``?`` placeholders; for PostgreSQL they are rewritten to ``%s``.
    """

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        ...

    def write(self) -> AbstractContextManager[Any]: ...

    def read(self) -> AbstractContextManager[Any]: ...


def placeholders(db: Transactions, sql: str) -> str:
    """``sql`` with ``?`` placeholders rewritten for ``db``'s driver."""
    if db.dialect == "sqlite":
        return sql
    if db.dialect == "postgresql":
        return sql.replace("?", "%s")
    raise ValueError(f"unknown database dialect {db.dialect!r}; expected one of {list(DIALECTS)}")


def create_schema(db: Transactions, statements: dict[str, str]) -> None:
    """Run ``statements[db.dialect]`` (``;``-separated) in one transaction."""
    if db.dialect not in statements:
        raise ValueError(
            f"unknown database dialect {db.dialect!r}; expected one of {sorted(statements)}"
        )
    with db.write() as cur:
        if db.dialect == "postgresql":
            # concurrent CREATE ... IF NOT EXISTS can still collide in PostgreSQL's catalogue
            cur.execute("SELECT pg_advisory_xact_lock(?)".replace("?", "%s"), (_SCHEMA_LOCK,))
        for statement in statements[db.dialect].split(";"):
            if statement.strip():
                cur.execute(statement)
