"""The SDK in sealed mode: pinning, challenges and sealing happen behind the same calls."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceobfuscator.client.sdk import APIError, Client
from faceobfuscator.errors import ConfigError, KeyPinError
from faceobfuscator.protocol.sealing import ServerKeyPair
from faceobfuscator.research.privacy.capture import ChannelTap
from tests.server.security.api import ENROL, KEYS, OLD, PROBE, client, settings


def _sdk(tc, role: str = "admin", **kw) -> Client:
    return Client("http://testserver", KEYS[role], http=tc, **kw)


def test_sealed_round_trip_with_a_pinned_key(tmp_path: Path, server_key) -> None:
    pair = server_key[0]
    s = settings(tmp_path, sealing_key_file=server_key[1], require_sealed=True,
                 master_key=OLD.to_base64())  # fmt: skip
    with client(s) as tc:
        tap = ChannelTap()
        tc.event_hooks = {"request": [tap], "response": []}
        admin = _sdk(tc, server_key_fingerprint=pair.fingerprint)
        assert admin.sealing_key == pair.public_key
        for i in range(3):
            admin.enroll_payload(f"p{i}", ENROL[i])
        user = _sdk(tc, "client", server_key_fingerprint=pair.fingerprint)
        v = user.verify_payload("p1", PROBE[1])
        assert v.match is True
        assert user.identify_payload(PROBE[2]).match == "p2"
        # what crossed the channel was sealed, each body bound to its own challenge
        assert len(tap.captures) == 4
        assert all(c.challenge and ENROL[0][60:120] not in c.data for c in tap.captures)
        assert len({c.challenge for c in tap.captures}) == 4


def test_a_swapped_server_key_is_refused(tmp_path: Path, server_key) -> None:
    s = settings(tmp_path, sealing_key_file=server_key[1])
    other = ServerKeyPair.generate()
    with client(s) as tc:
        with pytest.raises(KeyPinError, match="not the pinned"):
            _sdk(tc, server_key_fingerprint=other.fingerprint).enroll_payload("p0", ENROL[0])
        allowed = _sdk(tc, server_key_fingerprint=other.fingerprint, allow_key_change=True)
        assert allowed.enroll_payload("p0", ENROL[0]).subject == "p0"


def test_no_downgrade_to_plain(tmp_path: Path, server_key) -> None:
    with client(settings(tmp_path)) as tc:  # a plain server
        with pytest.raises(KeyPinError, match="publishes no sealing key"):
            _ = _sdk(tc, server_key_fingerprint=server_key[0].fingerprint).protocol
        with pytest.raises(KeyPinError):
            _ = _sdk(tc, sealed=True).protocol
        plain = _sdk(tc)  # nothing pinned: plain payloads, as the server asks
        assert plain.sealing_key is None
        assert plain.enroll_payload("p0", ENROL[0]).template_id > 0
    with pytest.raises(ConfigError):
        Client("http://x", "k", sealed=False, server_key_fingerprint="0" * 64)


def test_plain_client_against_a_sealed_only_server(tmp_path: Path, server_key) -> None:
    s = settings(tmp_path, sealing_key_file=server_key[1], require_sealed=True)
    with client(s) as tc:
        with pytest.raises(APIError) as info:
            _sdk(tc, sealed=False).enroll_payload("p0", ENROL[0])
        assert info.value.status_code == 415
