"""``/v1/protocol`` and ``/v1/health``: public, no key needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from faceobfuscator.errors import StorageError
from faceobfuscator.protocol.payload import SEALED_MEDIA_TYPE, payload_size
from faceobfuscator.protocol.sealing import SUITE_NAME
from faceobfuscator.server.deps import get_receiver, get_service
from faceobfuscator.server.schemas import HealthOut, ProtocolOut, SealingOut
from faceobfuscator.server.security.receiver import SealedReceiver
from faceobfuscator.server.service import GalleryService

router = APIRouter(prefix="/v1", tags=["meta"])

Service = Annotated[GalleryService, Depends(get_service)]
Receiver = Annotated[SealedReceiver | None, Depends(get_receiver)]


@router.get("/protocol", response_model=ProtocolOut)
def protocol(service: Service, receiver: Receiver) -> ProtocolOut:
    """The protocol configuration clients must use to make payloads, and the server's
    sealing key when it has one."""
    config = service.protocol
    sealing = None
    if receiver is not None:
        key = receiver.public_key
        sealing = SealingOut(
            public_key=key.to_base64(),
            key_id=key.key_id,
            fingerprint=key.fingerprint,
            suite=SUITE_NAME,
            media_type=SEALED_MEDIA_TYPE,
            required=receiver.required,
            challenge_ttl_s=receiver.challenges.ttl_s,
        )
    return ProtocolOut(
        config=config.to_dict(),
        config_hash=config.hash,
        format_version=config.format_version,
        payload_bytes=payload_size(config),
        sealing=sealing,
        replay_protection=receiver is not None and receiver.required,
    )


@router.get("/health", response_model=HealthOut)
def health(service: Service) -> HealthOut:
    """Liveness and the state of this process's index, after catching up with the
    database ("degraded" when the database cannot be reached)."""
    storage = "ok"
    try:
        service.sync()
    except StorageError:  # its message may name paths or hosts: not for a public endpoint
        storage = "the gallery database is unavailable"
    if service.storage_problem is not None:
        storage = service.storage_problem
    rebuild = service.rebuild
    return HealthOut(
        status="ok" if storage == "ok" else "degraded",
        storage=storage,
        model=service.embedder.name,
        backend=type(service.storage).__name__,
        templates_indexed=len(service.index),
        subjects_indexed=len(service.index.subject_counts()),
        index_digest=service.index.digest(),
        index=service.index.kind,
        index_complete=service.index_complete,
        rebuild_done=rebuild.done if rebuild else 0,
        rebuild_total=rebuild.total if rebuild else 0,
    )
