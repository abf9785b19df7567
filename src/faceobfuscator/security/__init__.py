"""Protection under the paper's threat model: sealed, fresh payloads and encrypted,
renewable storage.

- :mod:`.sealing`: HPKE sealing of payloads to the server's key, key files, key pinning;
- :mod:`.binding`: the associated data a sealed payload is bound to;
- :mod:`.challenges`: single-use challenges on SQLite or PostgreSQL;
- :mod:`.envelope`: envelope encryption of stored templates under a master key;
- :mod:`.rotation`: resumable master-key rotation while the store is in use;
- :mod:`.channel`: the sealed request end to end (client :func:`seal_request`, server
  :class:`SealedReceiver`);
- :mod:`.replay`: the replay attack, measured (imports torch; not loaded here);
- :mod:`.costs`: added latency and bytes.

Nothing here runs at import time beyond loading ``cryptography``.
"""

from .binding import OPERATIONS, Binding, associated_data
from .challenges import Challenge, ChallengeService, ChallengeStore, SQLChallengeStore
from .channel import SealedReceiver, seal_request
from .envelope import (
    ENVELOPE_OVERHEAD,
    MasterKey,
    MasterKeyring,
    TemplateVault,
    decrypt_record,
    encrypt_record,
)
from .errors import (
    ChallengeError,
    ChallengeExpiredError,
    ChallengeMismatchError,
    ChallengeUsedError,
    EnvelopeError,
    KeyFileError,
    KeyPinError,
    RotationError,
    SealError,
    SecurityError,
    UnknownChallengeError,
)
from .rotation import EnvelopeStore, RotationReport, SQLEnvelopeStore, rotate
from .sealing import (
    SEAL_OVERHEAD,
    ServerKeyPair,
    ServerPublicKey,
    open_sealed,
    pin_server_key,
    seal,
    sealed_size,
)
from .sql import Transactions

__all__ = [
    "OPERATIONS",
    "Binding",
    "associated_data",
    "Challenge",
    "ChallengeService",
    "ChallengeStore",
    "SQLChallengeStore",
    "SealedReceiver",
    "seal_request",
    "ENVELOPE_OVERHEAD",
    "MasterKey",
    "MasterKeyring",
    "TemplateVault",
    "decrypt_record",
    "encrypt_record",
    "ChallengeError",
    "ChallengeExpiredError",
    "ChallengeMismatchError",
    "ChallengeUsedError",
    "EnvelopeError",
    "KeyFileError",
    "KeyPinError",
    "RotationError",
    "SealError",
    "SecurityError",
    "UnknownChallengeError",
    "EnvelopeStore",
    "RotationReport",
    "SQLEnvelopeStore",
    "rotate",
    "SEAL_OVERHEAD",
    "ServerKeyPair",
    "ServerPublicKey",
    "open_sealed",
    "pin_server_key",
    "seal",
    "sealed_size",
    "Transactions",
]
