from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.binding import OPERATIONS, Binding, associated_data

CID = "0123456789abcdef0123456789abcdef"
PHASH = "ab" * 32


def test_encoding_is_the_documented_layout() -> None:
    got = associated_data(
        challenge_id=CID, operation="verify", subject="ann", protocol_hash=PHASH, format_version=1
    )
    want = (
        b"FOBF-AAD\x01"
        + b"\x00\x00\x00\x20" + CID.encode()
        + b"\x00\x00\x00\x06verify"
        + b"\x00\x00\x00\x03ann"
        + b"\x00\x00\x00\x40" + PHASH.encode()
        + b"\x00\x00\x00\x04\x00\x00\x00\x01"
    )  # fmt: skip
    assert got == want


hex32 = st.text("0123456789abcdef", min_size=32, max_size=32)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
subject = st.text(
    st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40
)  # no lone surrogates


@st.composite
def bindings(draw: st.DrawFn) -> Binding:
    op = draw(st.sampled_from(OPERATIONS))
    subj = "" if op == "identify" else draw(subject)
    return Binding(draw(hex32), op, subj, draw(hex64), draw(st.integers(0, 2**32 - 1)))


@given(bindings())
def test_decode_inverts_encode(b: Binding) -> None:
    assert Binding.decode(b.encode()) == b


@given(bindings(), bindings())
def test_different_bindings_never_share_an_encoding(a: Binding, b: Binding) -> None:
    assert (a.encode() == b.encode()) == (a == b)


def test_subjects_that_concatenate_alike_encode_differently() -> None:
    a = Binding(CID, "verify", "ab", PHASH, 1).encode()
    b = Binding(CID, "verify", "a", PHASH, 1).encode()
    assert a != b and len(a) == len(b) + 1


@given(bindings(), st.integers(0, 200), st.binary(min_size=1, max_size=3))
def test_decode_refuses_truncated_or_padded_input(b: Binding, cut: int, extra: bytes) -> None:
    data = b.encode()
    with pytest.raises(InputError):
        Binding.decode(data[: min(cut, len(data) - 1)])
    with pytest.raises(InputError):
        Binding.decode(data + extra)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InputError) as info:
        Binding("xyz", "delete", 3, "nothex", -1)  # type: ignore[arg-type]
    msg = str(info.value)
    for needle in ("challenge_id", "operation='delete'", "subject must be a string",
                   "protocol_hash", "format_version=-1"):  # fmt: skip
        assert needle in msg


@pytest.mark.parametrize(
    ("op", "subj", "needle"),
    [
        ("identify", "ann", "identify is bound to no subject"),
        ("verify", "", "must be bound to the subject"),
        ("enroll", "", "must be bound to the subject"),
        ("verify", "a\udc80", "UTF-8"),
        ("verify", "x" * 1025, "longer than 1024"),
    ],
)
def test_subject_rules(op: str, subj: str, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        Binding(CID, op, subj, PHASH, 1)
