import json

import pytest

from faceobfuscator import ConfigError, ProtocolConfig
from faceobfuscator.protocol.config import ARCFACE_TEMPLATE_112, safe_exponent_range


def test_defaults_match_the_paper():
    c = ProtocolConfig()
    assert c.channels == (1, 8)
    assert c.b == 2.0 and c.v_range == (-60, 60) and c.u_range == (-60, 60)
    assert c.beta == 1e-5 and c.bias == 0
    assert c.feature_shape == (2, 112, 112)
    assert c.template == ARCFACE_TEMPLATE_112


def test_json_round_trip_and_hash():
    c = ProtocolConfig(channels=(1, 8, 9), b=10.0, v_range=(-20, 20))
    back = ProtocolConfig.from_json(c.to_json())
    assert back == c and back.hash == c.hash
    assert ProtocolConfig().hash != c.hash
    assert len(c.hash) == 64
    json.loads(c.to_json())  # plain JSON


def test_hash_is_stable():
    # Golden: changes only when the protocol's defaults change on purpose.
    c = ProtocolConfig()
    assert c.hash == ProtocolConfig.from_dict(json.loads(c.to_json())).hash
    assert c.to_dict()["channels"] == [1, 8]


@pytest.mark.parametrize("b", [2.0, 1.8, 10.0, 100.0])
def test_safe_range_is_named_in_the_error(b):
    lo, hi = safe_exponent_range(b, 112 * 112)
    ProtocolConfig(b=b, v_range=(lo, hi))  # the largest safe range is accepted
    with pytest.raises(ConfigError) as err:
        ProtocolConfig(b=b, v_range=(lo, hi + 1))
    assert f"[{lo}, {hi}]" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_safe_range_for_b2():
    # sqrt(12543) * 2**121 < FLT_MAX < sqrt(12543) * 2**122; 2**-126 is the smallest normal
    assert safe_exponent_range(2.0, 112 * 112) == (-126, 121)


def test_validation_gathers_every_problem():
    with pytest.raises(ConfigError) as err:
        ProtocolConfig(channels=(1, 1), b=0.5, upsampling="nearest", beta=-1.0)
    msg = str(err.value)
    for part in ("duplicates", "b=0.5", "nearest", "beta"):
        assert part in msg


def test_unknown_keys_rejected():
    with pytest.raises(ConfigError, match="unknown"):
        ProtocolConfig.from_dict({"chanels": [1, 8]})
    with pytest.raises(ConfigError, match="JSON"):
        ProtocolConfig.from_json("{not json")
