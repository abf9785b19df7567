"""The server's side of sealed requests (the client's is
:func:`faceobfuscator.client.sealing.seal_request`).

 :meth:`SealedReceiver.open` authenticates the sealed payload
against the challenge, operation, subject, protocol hash and format version of the request
it arrived in, and only then consumes the challenge (so garbage sent with someone else's
challenge id cannot spend it). A payload comes out at most once per challenge.
"""

from __future__ import annotations

from collections.abc import Sequence

from faceobfuscator.protocol.binding import associated_data
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.sealing import ServerKeyPair, ServerPublicKey, open_sealed
from faceobfuscator.server.security.challenges import ChallengeService

__all__ = ["SealedReceiver"]


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

        Raises :class:`~faceobfuscator.errors.SealError` or a
        :class:`~faceobfuscator.errors.ChallengeError` (both ``ValueError``).
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
