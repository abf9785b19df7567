"""Shared helpers of the API-level security tests: settings, payloads, sealed calls."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from faceobfuscator.client.sealing import seal_request
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.protocol.sealing import ServerPublicKey
from faceobfuscator.server import ServerSettings, create_app
from faceobfuscator.server.keys import key_digest, new_api_key
from faceobfuscator.server.security.envelope import MasterKey
from tests.server.fakes import FakeEmbedder, faces, payloads

FACES = faces(3, seed=7)
ENROL = payloads(FACES, seed=1)
PROBE = payloads(FACES, seed=2)  # the same faces, other obfuscation draws
KEYS = {"admin": new_api_key(), "client": new_api_key()}
ADMIN = {"Authorization": f"Bearer {KEYS['admin']}"}
USER = {"Authorization": f"Bearer {KEYS['client']}"}
SEALED = {"Content-Type": "application/vnd.faceobfuscator.sealed"}
OCTET = {"Content-Type": "application/octet-stream"}
OLD, NEW = MasterKey(bytes(range(32))), MasterKey(bytes(range(1, 33)))


def settings(tmp: Path, **kw: object) -> ServerSettings:
    return ServerSettings(
        model_dir=tmp,
        db_url=f"sqlite:///{tmp / 'g.db'}",
        admin_key_hashes=(key_digest(KEYS["admin"]),),
        client_key_hashes=(key_digest(KEYS["client"]),),
        **kw,  # type: ignore[arg-type]
    )


def client(s: ServerSettings) -> TestClient:
    return TestClient(create_app(s, embedder=FakeEmbedder()))


def sealed_call(c: TestClient, path: str, op: str, bound: str, payload: bytes, auth: dict,
                params: dict | None = None):  # fmt: skip
    """Get a challenge for ``op`` on ``bound``, seal ``payload`` for it and send it."""
    info = c.get("/v1/protocol").json()
    key = ServerPublicKey.from_base64(info["sealing"]["public_key"])
    r = c.post("/v1/challenge", json={"operation": op, "subject": bound}, headers=auth)
    assert r.status_code == 200, r.text
    ch = r.json()
    challenge = Challenge(ch["challenge"], ch["operation"], ch["subject"], ch["expires_at"])
    blob = seal_request(payload, key, challenge=challenge, protocol=FakeEmbedder().protocol)
    query = {"challenge": challenge.id, **(params or {})}
    return c.post(path, content=blob, params=query, headers=auth | SEALED), blob, challenge


def enrol_sealed(c: TestClient, i: int) -> None:
    assert c.post("/v1/subjects", json={"subject": f"p{i}"}, headers=ADMIN).status_code == 201
    r, _, _ = sealed_call(c, f"/v1/subjects/p{i}/templates", "enroll", f"p{i}", ENROL[i], ADMIN)
    assert r.status_code == 201, r.text
