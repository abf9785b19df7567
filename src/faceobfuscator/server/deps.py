"""Request dependencies: the service, the caller's role, and the payload body."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from faceobfuscator.errors import PayloadTooLargeError
from faceobfuscator.protocol.payload import PAYLOAD_MEDIA_TYPE, SEALED_MEDIA_TYPE
from faceobfuscator.protocol.sealing import SEAL_OVERHEAD
from faceobfuscator.server.keys import KeyRing, Role
from faceobfuscator.server.ratelimit import RateLimiter
from faceobfuscator.server.security.receiver import SealedReceiver
from faceobfuscator.server.service import GalleryService

__all__ = [
    "get_service",
    "get_keyring",
    "get_receiver",
    "require",
    "scores_visible",
    "payload_body",
    "payload_for",
]

_bearer = HTTPBearer(auto_error=False, description="an API key: Authorization: Bearer fo_...")


def get_service(request: Request) -> GalleryService:
    return request.app.state.service


def get_keyring(request: Request) -> KeyRing:
    return request.app.state.keyring


def get_receiver(request: Request) -> SealedReceiver | None:
    """The sealed-request receiver; None in plain mode."""
    return getattr(request.app.state, "receiver", None)


def require(role: Role) -> Callable[..., Role]:
    """A dependency admitting callers whose key has ``role``; administrators are admitted
    everywhere. A key over its rate limit gets 429 with ``Retry-After`` (seconds)."""

    def check(
        request: Request,
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
        limiter: RateLimiter | None = getattr(request.app.state, "limiters", {}).get(held)
        if limiter is not None:
            digest = hashlib.sha256(credentials.credentials.encode("utf-8", "surrogatepass"))
            wait = limiter.take(digest.hexdigest())
            if wait > 0:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"this API key is limited to {limiter.rate:g} requests per second; "
                    "retry after the time in Retry-After",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        request.state.role = held
        return held

    return check


def scores_visible(request: Request) -> bool:
    """Whether this request's caller may see similarity scores: administrators always,
    client keys unless the server withholds them (``client_scores``)."""
    role = getattr(request.state, "role", None)
    return role is Role.ADMIN or bool(getattr(request.app.state, "client_scores", True))


async def payload_body(
    request: Request, service: Annotated[GalleryService, Depends(get_service)]
) -> bytes:
    """The raw request body, refused beyond the server's payload limit without reading
    more than the limit."""
    if _media_type(request) != PAYLOAD_MEDIA_TYPE:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the payload as the raw body with Content-Type: {PAYLOAD_MEDIA_TYPE}",
        )
    return await _read_body(request, service.max_payload_bytes)


def payload_for(operation: str) -> Callable[..., Awaitable[bytes]]:
    """A dependency giving the payload of an ``operation`` request: the raw body
    (``application/octet-stream``, plain mode), or the payload inside a sealed body
    (``application/vnd.faceobfuscator.sealed``), opened only if it is sealed for this
    request's challenge, operation and subject, and the challenge is then spent."""

    async def payload(
        request: Request,
        service: Annotated[GalleryService, Depends(get_service)],
        receiver: Annotated[SealedReceiver | None, Depends(get_receiver)],
        challenge: Annotated[
            str | None,
            Query(description="sealed payloads: the challenge from POST /v1/challenge"),
        ] = None,
    ) -> bytes:
        media = _media_type(request)
        if media == SEALED_MEDIA_TYPE:
            if receiver is None:
                raise HTTPException(
                    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                    "this server has no sealing key; send plain payloads "
                    f"(Content-Type: {PAYLOAD_MEDIA_TYPE})",
                )
            if challenge is None:
                raise HTTPException(
                    422,
                    "a sealed payload needs the query parameter challenge=<id> from "
                    "POST /v1/challenge",
                )
            blob = await _read_body(request, service.max_payload_bytes + SEAL_OVERHEAD)
            subject = "" if operation == "identify" else _subject(request)
            return await anyio.to_thread.run_sync(
                partial(
                    receiver.open,
                    blob,
                    challenge_id=challenge,
                    operation=operation,
                    subject=subject,
                )
            )
        if media == PAYLOAD_MEDIA_TYPE:
            if receiver is not None and receiver.required:
                raise HTTPException(
                    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                    "this server accepts sealed payloads only (plain ones offer no replay "
                    f"protection); send Content-Type: {SEALED_MEDIA_TYPE}, see /v1/protocol",
                )
            return await _read_body(request, service.max_payload_bytes)
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            f"send the payload as the raw body with Content-Type: {PAYLOAD_MEDIA_TYPE} "
            f"(plain) or {SEALED_MEDIA_TYPE} (sealed)",
        )

    return payload


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _subject(request: Request) -> str:
    # enrol names the subject in the path, verify in the query
    return str(request.path_params.get("subject") or request.query_params.get("subject", ""))


async def _read_body(request: Request, limit: int) -> bytes:
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
