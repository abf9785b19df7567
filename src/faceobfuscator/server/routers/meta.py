"""``/v1/protocol`` and ``/v1/health``: public, no key needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from ...payload import payload_size
from ..deps import get_service
from ..errors import StorageError
from ..schemas import HealthOut, ProtocolOut
from ..service import GalleryService

router = APIRouter(prefix="/v1", tags=["meta"])

Service = Annotated[GalleryService, Depends(get_service)]


@router.get("/protocol", response_model=ProtocolOut)
def protocol(service: Service) -> ProtocolOut:
    """The protocol configuration clients must use to make payloads."""
    config = service.protocol
    return ProtocolOut(
        config=config.to_dict(),
        config_hash=config.hash,
        format_version=config.format_version,
        payload_bytes=payload_size(config),
    )


@router.get("/health", response_model=HealthOut)
def health(service: Service) -> HealthOut:
    """Liveness and the state of this process's index, after catching up with the
    database ("degraded" when the database cannot be reached)."""
    try:
        service.sync()
        state = "ok"
    except StorageError:
        state = "degraded"
    return HealthOut(
        status=state,
        model=service.embedder.name,
        backend=type(service.storage).__name__,
        templates_indexed=len(service.index),
        subjects_indexed=len(service.index.subject_counts()),
        index_digest=service.index.digest(),
    )
