"""The server's protection under the paper's threat model, built from its settings: sealed,
single-use requests (:class:`~faceobfuscator.server.security.receiver.SealedReceiver`) and
templates encrypted at rest (:class:`~faceobfuscator.server.security.envelope.TemplateVault`).

Without a sealing key the server runs in plain mode, the paper's design: a captured
payload, or a leaked feature obfuscated again, is accepted as often as a fresh capture.
"""

from __future__ import annotations

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.sealing import ServerKeyPair
from faceobfuscator.server.security.challenges import ChallengeService, SQLChallengeStore
from faceobfuscator.server.security.envelope import TemplateVault
from faceobfuscator.server.security.receiver import SealedReceiver
from faceobfuscator.server.settings import ServerSettings
from faceobfuscator.server.storage import SQLStorage

__all__ = ["build_vault", "build_receiver"]


def build_vault(settings: ServerSettings) -> TemplateVault | None:
    """The template vault, or None when templates are stored as sent."""
    keys = settings.master_keyring()
    return None if keys is None else TemplateVault(keys)


def build_receiver(
    settings: ServerSettings, storage: SQLStorage, protocol: ProtocolConfig
) -> SealedReceiver | None:
    """The sealed-request receiver, its challenges in the gallery database (shared by every
    API process); None in plain mode."""
    if settings.sealing_key_file is None:
        return None
    keys = ServerKeyPair.load(settings.sealing_key_file)
    challenges = ChallengeService(SQLChallengeStore(storage), ttl_s=settings.challenge_ttl_s)
    return SealedReceiver(keys, challenges, protocol, required=settings.require_sealed)
