"""The client's side of sealed requests: ask the server for a challenge for the operation
and subject, then :func:`seal_request` (the server opens it with
:class:`faceobfuscator.server.security.receiver.SealedReceiver`)."""

from __future__ import annotations

from faceobfuscator.protocol.binding import associated_data
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.sealing import ServerPublicKey, seal

__all__ = ["seal_request"]


def seal_request(
    payload: bytes, public_key: ServerPublicKey, *, challenge: Challenge, protocol: ProtocolConfig
) -> bytes:
    """Seal ``payload`` for the request ``challenge`` was issued for."""
    aad = associated_data(
        challenge_id=challenge.id,
        operation=challenge.operation,
        subject=challenge.subject,
        protocol_hash=protocol.hash,
        format_version=protocol.format_version,
    )
    return seal(payload, public_key, aad=aad)
