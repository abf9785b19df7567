"""What the protection costs: added latency per request (p50, p99) on the client and the
server, and bytes per payload and per stored template.

Client: sealing one payload (HPKE, fresh ephemeral key). Server: opening it, issuing and
consuming its challenge (two single-statement transactions in the given database), and,
with encrypted storage, encrypting a template at enrolment and decrypting it when the
index is built. The challenge's extra HTTP round trip is not counted (it depends on the
network).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from faceobfuscator.client.sealing import seal_request
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.payload import payload_size
from faceobfuscator.protocol.sealing import SEAL_OVERHEAD, ServerKeyPair
from faceobfuscator.research.bench.timing import latency_summary
from faceobfuscator.server.security.challenges import ChallengeService, SQLChallengeStore
from faceobfuscator.server.security.envelope import ENVELOPE_OVERHEAD, MasterKey, TemplateVault
from faceobfuscator.server.security.receiver import SealedReceiver
from faceobfuscator.server.security.sql import Transactions

__all__ = ["security_costs"]


def _timed(fn: Callable[[int], Any], n: int) -> dict[str, float]:
    ms = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        ms[i] = (time.perf_counter() - t) * 1e3
    return latency_summary(ms)


def security_costs(db: Transactions, config: ProtocolConfig, *, n: int = 300) -> dict[str, Any]:
    """Time each protection step ``n`` times on random payloads of ``config``'s size, with
    challenges in ``db``; returns a JSON-ready dict."""
    size = payload_size(config)
    payloads = [os.urandom(size) for _ in range(8)]
    pair = ServerKeyPair.generate()
    receiver = SealedReceiver(pair, ChallengeService(SQLChallengeStore(db)), config)
    vault = TemplateVault(MasterKey.generate())

    challenges = [receiver.challenge("verify", "bench") for _ in range(n)]
    blobs = [
        seal_request(payloads[i % 8], pair.public_key, challenge=c, protocol=config)
        for i, c in enumerate(challenges)
    ]
    fresh = [receiver.challenge("verify", "bench") for _ in range(n)]
    stored = [vault.encrypt(payloads[i % 8], subject="bench", template_id=i) for i in range(n)]
    out: dict[str, Any] = {
        "payload_bytes": size,
        "sealed_payload_bytes": size + SEAL_OVERHEAD,
        "stored_template_bytes_plain": size,
        "stored_template_bytes_encrypted": size + ENVELOPE_OVERHEAD,
        "database": db.dialect,
        "n": n,
        "client_seal": _timed(
            lambda i: seal_request(
                payloads[i % 8], pair.public_key, challenge=fresh[i], protocol=config
            ),
            n,
        ),
        "server_issue_challenge": _timed(lambda i: receiver.challenge("verify", "bench"), n),
        "server_open_and_consume": _timed(
            lambda i: receiver.open(
                blobs[i], challenge_id=challenges[i].id, operation="verify", subject="bench"
            ),
            n,
        ),
        "server_encrypt_template": _timed(
            lambda i: vault.encrypt(payloads[i % 8], subject="bench", template_id=i), n
        ),
        "server_decrypt_template": _timed(
            lambda i: vault.decrypt(stored[i], subject="bench", template_id=i), n
        ),
    }
    return out
