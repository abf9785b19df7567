"""Request dependencies: the service, the caller's role, and the payload body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import PayloadTooLargeError
from .keys import KeyRing, Role
from .service import GalleryService

__all__ = ["get_service", "get_keyring", "require", "payload_body", "PAYLOAD_MEDIA_TYPE"]

PAYLOAD_MEDIA_TYPE = "application/octet-stream"

_bearer = HTTPBearer(auto_error=False, description="an API key: Authorization: Bearer fo_...")


def get_service(request: Request) -> GalleryService:
    return request.app.state.service


def get_keyring(request: Request) -> KeyRing:
    return request.app.state.keyring


def require(role: Role) -> Callable[..., Role]:
    """A dependency admitting callers whose key has ``role``; administrators are admitted
    everywhere."""

    def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        keyring: Annotated[KeyRing, Depends(get_keyring)],
    ) -> Role:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send the header 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        held = keyring.role_of(credentials.credentials)
        if held is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "invalid API key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if role is Role.ADMIN and held is not Role.ADMIN:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                "this API key has the client role, which may verify and identify only; "
                "creating, enrolling and deleting need an administrator key",
            )
        return held

    return check


async def payload_body(
    request: Request, service: Annotated[GalleryService, Depends(get_service)]
) -> bytes:
    """The raw request body, refused beyond the server's payload limit without reading
    more than the limit."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != PAYLOAD_MEDIA_TYPE:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the payload as the raw body with Content-Type: {PAYLOAD_MEDIA_TYPE}",
        )
    limit = service.max_payload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)
