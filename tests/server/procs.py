"""Real server processes for tests: :class:`LocalServer` accepting the test keys."""

from __future__ import annotations

import json
from pathlib import Path

from faceobfuscator.server.keys import key_digest
from faceobfuscator.server.process import LocalServer

__all__ = ["launch_server"]


def launch_server(
    *, model: Path, db_url: str, keys: dict[str, str], log: Path, env: dict[str, str] | None = None
) -> LocalServer:
    """``faceobf serve`` launched in a subprocess (call ``wait_ready()`` on it)."""
    digests = {
        "FACEOBF_ADMIN_KEY_HASHES": json.dumps([key_digest(keys["admin"])]),
        "FACEOBF_CLIENT_KEY_HASHES": json.dumps([key_digest(keys["client"])]),
    }
    server = LocalServer(model=model, db_url=db_url, log=log, env={**digests, **(env or {})})
    server.launch()
    return server
