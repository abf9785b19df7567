"""``/v1/verify`` (1:1) and ``/v1/identify`` (1:N): client or administrator keys.

When the server withholds scores (``client_scores`` off), client keys get decisions only:
verify's ``score`` is null, and identify lists only the candidates that match, without
scores, so neither a score nor a ranking of non-matches can guide a hill-climb.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from faceobfuscator.server.deps import get_service, payload_for, require, scores_visible
from faceobfuscator.server.keys import Role
from faceobfuscator.server.routers._common import PAYLOAD_BODY, errors
from faceobfuscator.server.schemas import CandidateOut, IdentifyOut, SubjectName, VerifyOut
from faceobfuscator.server.service import GalleryService

router = APIRouter(
    prefix="/v1",
    tags=["recognition"],
    dependencies=[Depends(require(Role.CLIENT))],
    responses=errors(401, 409, 413, 415, 422),
)

Service = Annotated[GalleryService, Depends(get_service)]
VerifyPayload = Annotated[bytes, Depends(payload_for("verify"))]
IdentifyPayload = Annotated[bytes, Depends(payload_for("identify"))]
ScoresVisible = Annotated[bool, Depends(scores_visible)]


@router.post(
    "/verify", response_model=VerifyOut, openapi_extra=PAYLOAD_BODY, responses=errors(404, 409)
)
def verify(
    subject: Annotated[SubjectName, Query()],
    payload: VerifyPayload,
    service: Service,
    show: ScoresVisible,
) -> VerifyOut:
    """Is the payload's face the subject's? Decided at the model's calibrated threshold."""
    v = service.verify(subject, payload)
    score = v.score if show else None
    return VerifyOut(subject=v.subject, score=score, match=v.match, threshold=v.threshold)


@router.post("/identify", response_model=IdentifyOut, openapi_extra=PAYLOAD_BODY)
def identify(
    payload: IdentifyPayload,
    service: Service,
    show: ScoresVisible,
    top_k: Annotated[int, Query(ge=1)] = 5,
) -> IdentifyOut:
    """The ``top_k`` enrolled subjects most similar to the payload's face, best first."""
    if top_k > service.max_top_k:
        raise HTTPException(
            422,
            f"top_k={top_k} exceeds this server's limit of {service.max_top_k}",
        )
    result = service.identify(payload, top_k=top_k)
    return IdentifyOut(
        candidates=[
            CandidateOut(subject=c.subject, score=c.score if show else None, match=c.match)
            for c in result.candidates
            if show or c.match
        ],
        match=result.match,
        threshold=result.threshold,
    )
