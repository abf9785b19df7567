"""What a sealed payload is bound to: the canonical associated data of one request.

The encoding is a fixed tag followed by five length-prefixed fields in a fixed order, so two
different bindings never encode to the same bytes (no field can absorb its neighbour)::

    b"FOBF-AAD" version:u8
    len:u32 challenge id (32 lowercase hex digits, the 128-bit challenge)
    len:u32 operation ("enroll" | "verify" | "identify")
    len:u32 subject (UTF-8; empty for identify)
    len:u32 protocol hash (64 lowercase hex digits)
    len:u32 format version (u32, big-endian)
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from faceobfuscator.errors import InputError

__all__ = ["OPERATIONS", "Binding", "associated_data", "operation_problems"]

#: The operations a challenge and a sealed payload can be bound to.
OPERATIONS = ("enroll", "verify", "identify")

_TAG = b"FOBF-AAD"
_VERSION = 1
_LEN = struct.Struct(">I")
_CHALLENGE = re.compile(r"^[0-9a-f]{32}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
MAX_SUBJECT_BYTES = 1024


@dataclass(frozen=True)
class Binding:
    """The context one sealed payload is valid in.

    Attributes:
        challenge_id: the single-use challenge the server issued, 32 lowercase hex digits.
        operation: one of :data:`OPERATIONS`.
        subject: the subject enrolled or verified; empty for identify.
        protocol_hash: :attr:`ProtocolConfig.hash` of the protocol the payload was made in.
        format_version: the payload format version.
    """

    challenge_id: str
    operation: str
    subject: str
    protocol_hash: str
    format_version: int

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise InputError("invalid request binding:\n  - " + "\n  - ".join(problems))

    def encode(self) -> bytes:
        """The canonical associated data."""
        parts = (
            self.challenge_id.encode("ascii"),
            self.operation.encode("ascii"),
            self.subject.encode("utf-8"),
            self.protocol_hash.encode("ascii"),
            _LEN.pack(self.format_version),
        )
        return _TAG + bytes([_VERSION]) + b"".join(_LEN.pack(len(p)) + p for p in parts)

    @classmethod
    def decode(cls, data: bytes) -> Binding:
        """Parse :meth:`encode`'s output; raise :class:`InputError` on anything else."""
        head = len(_TAG) + 1
        if data[: len(_TAG)] != _TAG or len(data) < head or data[len(_TAG)] != _VERSION:
            raise InputError(f"not a version-{_VERSION} request binding")
        fields: list[bytes] = []
        pos = head
        for _ in range(5):
            if pos + _LEN.size > len(data):
                raise InputError("request binding is truncated")
            (n,) = _LEN.unpack_from(data, pos)
            pos += _LEN.size
            if pos + n > len(data):
                raise InputError("request binding is truncated")
            fields.append(data[pos : pos + n])
            pos += n
        if pos != len(data) or len(fields[4]) != _LEN.size:
            raise InputError("request binding has trailing or malformed fields")
        try:
            text = [f.decode("utf-8") for f in fields[:4]]
        except UnicodeDecodeError:
            raise InputError("request binding holds a field that is not UTF-8") from None
        return cls(text[0], text[1], text[2], text[3], _LEN.unpack(fields[4])[0])


def associated_data(
    *, challenge_id: str, operation: str, subject: str, protocol_hash: str, format_version: int
) -> bytes:
    """The canonical associated data of one request (see :class:`Binding`)."""
    return Binding(challenge_id, operation, subject, protocol_hash, format_version).encode()


def _problems(b: Binding) -> list[str]:
    p: list[str] = []
    if not isinstance(b.challenge_id, str) or not _CHALLENGE.match(b.challenge_id):
        p.append("challenge_id must be 32 lowercase hex digits, as /v1/challenge returns it")
    p.extend(operation_problems(b.operation, b.subject))
    if not isinstance(b.protocol_hash, str) or not _HASH.match(b.protocol_hash):
        p.append("protocol_hash must be 64 lowercase hex digits (ProtocolConfig.hash)")
    if not isinstance(b.format_version, int) or not 0 <= b.format_version < 2**32:
        p.append(f"format_version={b.format_version!r} must be an integer in [0, 2**32)")
    return p


def operation_problems(operation: object, subject: object) -> list[str]:
    """What is wrong with binding ``operation`` to ``subject`` (empty when nothing is)."""
    p: list[str] = []
    if operation not in OPERATIONS:
        p.append(f"operation={operation!r}; expected one of {list(OPERATIONS)}")
    if not isinstance(subject, str):
        p.append(f"subject must be a string, got {type(subject).__name__}")
    elif operation == "identify" and subject:
        p.append("identify is bound to no subject; pass subject=''")
    elif operation in ("enroll", "verify") and not subject:
        p.append(f"{operation} must be bound to the subject's name; got an empty subject")
    elif not _utf8(subject):
        p.append("subject is not encodable as UTF-8 (it holds a lone surrogate)")
    elif len(subject.encode("utf-8")) > MAX_SUBJECT_BYTES:
        p.append(f"subject is longer than {MAX_SUBJECT_BYTES} bytes in UTF-8")
    return p


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
