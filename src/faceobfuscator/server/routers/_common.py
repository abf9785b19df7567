"""What the routers share: the OpenAPI description of a payload body and error answers."""

from __future__ import annotations

from typing import Any

from ..deps import PAYLOAD_MEDIA_TYPE
from ..schemas import ErrorOut

PAYLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "one payload as made by the client (faceobfuscator.encode_payload)",
        "content": {PAYLOAD_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
    }
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error status codes."""
    return {code: {"model": ErrorOut} for code in codes}
