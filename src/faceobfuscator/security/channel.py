"""Sealed requests end to end: what the client does before sending a payload and what the
server does before it reads one.

Client: ask the server for a challenge for the operation and subject, then
:func:`seal_request`. Server: :meth:`SealedReceiver.open` authenticates the sealed payload
against the challenge, operation, subject, protocol hash and format version of the request
it arrived in, and only then consumes the challenge (so garbage sent with someone else's
challenge id cannot spend it). A payload comes out at most once per challenge.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import ProtocolConfig
from .binding import associated_data
from .challenges import Challenge, ChallengeService
from .sealing import ServerKeyPair, ServerPublicKey, open_sealed, seal

__all__ = ["SealedReceiver", "seal_request", "SUITE_NAME"]

#: The HPKE suite of sealed payloads, as ``/v1/protocol`` names it.
SUITE_NAME = "HPKE base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM"


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


class SealedReceiver:
    """The server's side of sealed requests.

    Args:
        keys: the server's key pairs, the current one first (it is the one published);
            the others are still accepted while clients move to the current one.
        challenges: the challenge service, on a store shared by every API process.
        protocol: the server's protocol.
        required: whether the server refuses plain payloads.
    """

    def __init__(
        self,
        keys: ServerKeyPair | Sequence[ServerKeyPair],
        challenges: ChallengeService,
        protocol: ProtocolConfig,
        *,
        required: bool = False,
    ) -> None:
        self.keys = [keys] if isinstance(keys, ServerKeyPair) else list(keys)
        if not self.keys:
            raise ValueError("SealedReceiver needs at least one server key pair")
        self.challenges = challenges
        self.protocol = protocol
        self.required = required

    @property
    def public_key(self) -> ServerPublicKey:
        return self.keys[0].public_key

    def challenge(self, operation: str, subject: str = "") -> Challenge:
        return self.challenges.issue(operation, subject)

    def open(self, blob: bytes, *, challenge_id: str, operation: str, subject: str = "") -> bytes:
        """The payload inside ``blob``, which must be sealed for exactly this request.

        Raises :class:`~faceobfuscator.security.errors.SealError` or a
        :class:`~faceobfuscator.security.errors.ChallengeError` (both ``ValueError``).
        """
        aad = associated_data(
            challenge_id=challenge_id,
            operation=operation,
            subject=subject,
            protocol_hash=self.protocol.hash,
            format_version=self.protocol.format_version,
        )
        payload = open_sealed(blob, self.keys, aad=aad)
        self.challenges.consume(challenge_id, operation, subject)
        return payload
