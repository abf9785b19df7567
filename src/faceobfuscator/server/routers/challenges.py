"""``/v1/challenge``: single-use challenges that sealed payloads are bound to."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from faceobfuscator.server.deps import get_receiver, require
from faceobfuscator.server.keys import Role
from faceobfuscator.server.routers._common import errors
from faceobfuscator.server.schemas import ChallengeIn, ChallengeOut
from faceobfuscator.server.security.receiver import SealedReceiver

router = APIRouter(prefix="/v1", tags=["recognition"], responses=errors(401, 403, 404, 422))


@router.post("/challenge", response_model=ChallengeOut)
def challenge(
    body: ChallengeIn,
    role: Annotated[Role, Depends(require(Role.CLIENT))],
    receiver: Annotated[SealedReceiver | None, Depends(get_receiver)],
) -> ChallengeOut:
    """A fresh challenge for one enrol (administrator key), verify or identify request;
    seal the payload for it and send it before ``expires_at``."""
    if receiver is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            "this server has no sealing key and issues no challenges (plain mode)",
        )
    if body.operation == "enroll" and role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "enrol challenges need an administrator key")
    c = receiver.challenge(body.operation, body.subject)
    return ChallengeOut(
        challenge=c.id, operation=c.operation, subject=c.subject, expires_at=c.expires_at
    )
