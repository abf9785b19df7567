"""Sealed requests and encrypted templates through the REST API (TestClient, fast
stand-in embedder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceobfuscator.client.sealing import seal_request
from faceobfuscator.errors import EnvelopeError
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.protocol.sealing import ServerPublicKey
from faceobfuscator.server.security.envelope import is_envelope, record_key_id
from faceobfuscator.server.security.rotation import SQLEnvelopeStore, rotate
from faceobfuscator.server.storage import open_storage
from tests.server.fakes import FakeEmbedder
from tests.server.security.api import (
    ENROL,
    NEW,
    OCTET,
    OLD,
    PROBE,
    SEALED,
    USER,
    client,
    enrol_sealed,
    sealed_call,
    settings,
)


@pytest.fixture
def sealed_server(tmp_path: Path, server_key) -> Iterator[TestClient]:
    s = settings(
        tmp_path, sealing_key_file=server_key[1], require_sealed=True, master_key=OLD.to_base64()
    )
    with client(s) as c:
        yield c


def test_protocol_publishes_the_key_and_the_mode(tmp_path, server_key, sealed_server) -> None:
    info = sealed_server.get("/v1/protocol").json()
    pair = server_key[0]
    assert info["sealing"]["fingerprint"] == pair.fingerprint
    assert info["sealing"]["key_id"] == pair.key_id
    assert ServerPublicKey.from_base64(info["sealing"]["public_key"]) == pair.public_key
    assert info["sealing"]["required"] is True and info["replay_protection"] is True
    (tmp_path / "plain").mkdir()
    with client(settings(tmp_path / "plain")) as c:
        plain = c.get("/v1/protocol").json()
    assert plain["sealing"] is None and plain["replay_protection"] is False
    (tmp_path / "optional").mkdir()
    with client(settings(tmp_path / "optional", sealing_key_file=server_key[1])) as c:
        optional = c.get("/v1/protocol").json()
    # sealing that is not required protects nothing: an attacker just sends plain payloads
    assert optional["sealing"]["required"] is False and optional["replay_protection"] is False


def test_sealed_requests_succeed_once(sealed_server) -> None:
    c = sealed_server
    for i in range(3):
        enrol_sealed(c, i)
    r, blob, ch = sealed_call(c, "/v1/verify", "verify", "p1", PROBE[1], USER, {"subject": "p1"})
    assert r.status_code == 200 and r.json()["match"] is True
    again = c.post("/v1/verify", content=blob, params={"subject": "p1", "challenge": ch.id},
                   headers=USER | SEALED)  # fmt: skip
    assert again.status_code == 409 and "already used" in again.json()["detail"]
    r, _, _ = sealed_call(c, "/v1/identify", "identify", "", PROBE[2], USER)
    assert r.status_code == 200 and r.json()["match"] == "p2"


def test_a_captured_blob_does_not_move_to_a_new_challenge(sealed_server) -> None:
    c = sealed_server
    enrol_sealed(c, 0)
    r, blob, _ = sealed_call(c, "/v1/verify", "verify", "p0", PROBE[0], USER, {"subject": "p0"})
    assert r.status_code == 200
    fresh = c.post("/v1/challenge", json={"operation": "verify", "subject": "p0"}, headers=USER)
    cid = fresh.json()["challenge"]
    moved = c.post("/v1/verify", content=blob, params={"subject": "p0", "challenge": cid},
                   headers=USER | SEALED)  # fmt: skip
    assert moved.status_code == 422 and "does not authenticate" in moved.json()["detail"]
    # the failed attempt did not spend the victim's fresh challenge
    key = ServerPublicKey.from_base64(c.get("/v1/protocol").json()["sealing"]["public_key"])
    ch = Challenge(cid, "verify", "p0", 0.0)
    good = seal_request(PROBE[0], key, challenge=ch, protocol=FakeEmbedder().protocol)
    ok = c.post("/v1/verify", content=good, params={"subject": "p0", "challenge": cid},
                headers=USER | SEALED)  # fmt: skip
    assert ok.status_code == 200


def test_binding_to_subject_and_operation(sealed_server) -> None:
    c = sealed_server
    for i in range(2):
        enrol_sealed(c, i)
    key = ServerPublicKey.from_base64(c.get("/v1/protocol").json()["sealing"]["public_key"])
    cid = c.post("/v1/challenge", json={"operation": "verify", "subject": "p0"},
                 headers=USER).json()["challenge"]  # fmt: skip
    blob = seal_request(PROBE[0], key, challenge=Challenge(cid, "verify", "p0", 0.0),
                        protocol=FakeEmbedder().protocol)  # fmt: skip
    other_subject = c.post("/v1/verify", content=blob, params={"subject": "p1", "challenge": cid},
                           headers=USER | SEALED)  # fmt: skip
    assert other_subject.status_code == 422
    as_identify = c.post("/v1/identify", content=blob, params={"challenge": cid},
                         headers=USER | SEALED)  # fmt: skip
    assert as_identify.status_code == 422


def test_refusals(sealed_server, tmp_path) -> None:
    c = sealed_server
    enrol_sealed(c, 0)
    plain = c.post("/v1/verify", content=PROBE[0], params={"subject": "p0"}, headers=USER | OCTET)
    assert plain.status_code == 415 and "sealed payloads only" in plain.json()["detail"]
    no_challenge = c.post("/v1/verify", content=b"x" * 200, params={"subject": "p0"},
                          headers=USER | SEALED)  # fmt: skip
    assert no_challenge.status_code == 422 and "challenge=" in no_challenge.json()["detail"]
    r = c.post("/v1/challenge", json={"operation": "enroll", "subject": "p0"}, headers=USER)
    assert r.status_code == 403
    r = c.post("/v1/challenge", json={"operation": "identify", "subject": "p0"}, headers=USER)
    assert r.status_code == 422
    assert c.post("/v1/challenge", json={"operation": "identify"}).status_code == 401


def test_plain_server_refuses_sealed_bodies(tmp_path) -> None:
    with client(settings(tmp_path)) as c:
        r = c.post("/v1/identify", content=b"x" * 200, params={"challenge": "0" * 32},
                   headers=USER | SEALED)  # fmt: skip
        assert r.status_code == 415 and "no sealing key" in r.json()["detail"]
        r = c.post("/v1/challenge", json={"operation": "identify"}, headers=USER)
        assert r.status_code == 404


def test_templates_are_stored_encrypted_and_survive_rotation(tmp_path, server_key) -> None:
    db = tmp_path / "g.db"
    s_old = settings(tmp_path, sealing_key_file=server_key[1], master_key=OLD.to_base64())
    with client(s_old) as c:
        for i in range(3):
            enrol_sealed(c, i)
    storage = open_storage(f"sqlite:///{db}")
    rows = storage.payloads(storage.template_ids())
    assert len(rows) == 3 and all(is_envelope(b) and record_key_id(b) == OLD.key_id
                                  for b in rows.values())  # fmt: skip
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("g.db"))
    assert all(p[64:128] not in raw for p in ENROL)  # no plain payload bytes on disk

    # during the rotation, processes hold both keys; afterwards only the new one
    both = settings(tmp_path, sealing_key_file=server_key[1], master_key=NEW.to_base64(),
                    previous_master_keys=(OLD.to_base64(),))  # fmt: skip
    with client(both) as c:
        r, _, _ = sealed_call(c, "/v1/verify", "verify", "p1", PROBE[1], USER, {"subject": "p1"})
        assert r.status_code == 200 and r.json()["match"] is True
        report = rotate(SQLEnvelopeStore(storage), OLD, NEW, batch=2)
        assert report.moved == 3
        r, _, _ = sealed_call(c, "/v1/verify", "verify", "p1", PROBE[1], USER, {"subject": "p1"})
        assert r.status_code == 200 and r.json()["match"] is True
    storage.close()
    s_new = settings(tmp_path, sealing_key_file=server_key[1], master_key=NEW.to_base64())
    with client(s_new) as c:
        r, _, _ = sealed_call(c, "/v1/verify", "verify", "p2", PROBE[2], USER, {"subject": "p2"})
        assert r.status_code == 200 and r.json()["match"] is True
    with pytest.raises(EnvelopeError, match=f"master key {NEW.key_id}, which is not configured"):
        with client(s_old):
            pass
    with pytest.raises(EnvelopeError, match="no master key"):
        with client(settings(tmp_path)):
            pass
