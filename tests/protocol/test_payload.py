import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceobfuscator import PayloadError, ProtocolConfig, decode_payload, encode_payload
from faceobfuscator.protocol.payload import MAGIC, payload_size

CONFIG = ProtocolConfig()


def _feature(seed=0):
    return (
        np.random.default_rng(seed).normal(size=CONFIG.feature_shape).astype(np.float32) * 2.0**40
    )


def test_round_trip_is_exact_and_98_kb():
    f = _feature()
    data = encode_payload(f, CONFIG)
    assert len(data) == payload_size(CONFIG) == 4 + 2 + 1 + 1 + 32 + 12 + 2 * 112 * 112 * 4
    assert len(data) // 1024 == 98
    p = decode_payload(data, CONFIG)
    np.testing.assert_array_equal(p.feature, f)
    assert p.version == 1 and p.config_hash == CONFIG.hash and p.shape == (2, 112, 112)
    assert not p.feature.flags.writeable


def test_header_layout():
    data = encode_payload(_feature(), CONFIG)
    magic, version, dtype, ndim = struct.unpack_from("<4sHBB", data)
    assert (magic, version, dtype, ndim) == (MAGIC, 1, 1, 3)
    assert data[8:40].hex() == CONFIG.hash
    assert struct.unpack_from("<3I", data, 40) == (2, 112, 112)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"XXXX" + d[4:], "magic"),
        (lambda d: d[:4] + struct.pack("<H", 9) + d[6:], "version 9"),
        (lambda d: d[:6] + b"\x07" + d[7:], "dtype"),
        (lambda d: d[:8] + bytes(32) + d[40:], "protocol configuration"),
        (lambda d: d[:40] + struct.pack("<3I", 2, 112, 111) + d[52:], "shape"),
        (lambda d: d[:-4], "bytes, expected exactly"),
        (lambda d: d + b"\x00", "bytes, expected exactly"),
        (lambda d: d[:20], "header"),
        (lambda d: d[:52] + struct.pack("<f", float("nan")) + d[56:], "NaN"),
        (lambda d: d[:52] + struct.pack("<f", float("inf")) + d[56:], "NaN or infinite"),
    ],
)
def test_every_corruption_is_named(mutate, message):
    data = encode_payload(_feature(), CONFIG)
    with pytest.raises(PayloadError, match=message):
        decode_payload(mutate(data), CONFIG)


def test_other_protocol_is_refused():
    other = ProtocolConfig(channels=(1, 8, 9))
    data = encode_payload(np.ones(other.feature_shape, np.float32), other)
    with pytest.raises(PayloadError, match="another protocol"):
        decode_payload(data, CONFIG)


def test_encoding_refuses_bad_features():
    with pytest.raises(PayloadError, match="shape"):
        encode_payload(np.zeros((3, 112, 112), np.float32), CONFIG)
    bad = _feature()
    bad[0, 0, 0] = np.nan
    with pytest.raises(PayloadError, match="NaN"):
        encode_payload(bad, CONFIG)
    with pytest.raises(PayloadError, match="float32"):
        encode_payload(np.zeros(CONFIG.feature_shape, np.int32), CONFIG)
    with pytest.raises(PayloadError, match="bytes"):
        decode_payload("text", CONFIG)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes_only_raise_payload_error(data):
    with pytest.raises(PayloadError):
        decode_payload(data, CONFIG)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200_000), st.binary(min_size=1, max_size=8))
def test_fuzz_mutated_payloads_never_half_parse(position, junk):
    data = bytearray(encode_payload(_feature(1), CONFIG))
    pos = position % len(data)
    data[pos : pos + len(junk)] = junk
    try:
        p = decode_payload(bytes(data), CONFIG)
    except PayloadError:
        return
    # a mutation that decodes must give a complete, finite feature of the right shape
    assert p.feature.shape == CONFIG.feature_shape and np.isfinite(p.feature).all()
