"""What the routers share: the OpenAPI description of a payload body and error answers."""

from __future__ import annotations

from typing import Any

from faceobfuscator.protocol.payload import PAYLOAD_MEDIA_TYPE, SEALED_MEDIA_TYPE
from faceobfuscator.server.schemas import ErrorOut

_BINARY = {"schema": {"type": "string", "format": "binary"}}
PAYLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "one payload as made by the client (faceobfuscator.encode_payload): "
        f"plain ({PAYLOAD_MEDIA_TYPE}; no replay protection), or sealed to the server's key "
        f"and bound to a challenge ({SEALED_MEDIA_TYPE}, with ?challenge=)",
        "content": {PAYLOAD_MEDIA_TYPE: _BINARY, SEALED_MEDIA_TYPE: _BINARY},
    }
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error status codes."""
    return {code: {"model": ErrorOut} for code in codes}
