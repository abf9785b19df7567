"""Two real API processes sharing PostgreSQL in sealed mode with encrypted templates: a
sealed request spent at one process is refused at the other, and each process reads the
templates the other enrolled (same master key)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from faceobfuscator.client.sdk import Client
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.research.privacy.capture import ChannelTap
from faceobfuscator.server.keys import key_digest
from faceobfuscator.server.process import LocalServer
from faceobfuscator.server.security.envelope import is_envelope
from faceobfuscator.server.storage import open_storage
from tests.server.security.api import ENROL, KEYS, OLD, PROBE
from tests.server.security.dbs import new_schema


def test_a_challenge_spent_at_one_process_is_spent_at_all(
    tmp_path: Path, postgres_url: str, server_key
) -> None:
    db_url = new_schema(postgres_url)
    env = {
        "FACEOBF_ADMIN_KEY_HASHES": json.dumps([key_digest(KEYS["admin"])]),
        "FACEOBF_CLIENT_KEY_HASHES": json.dumps([key_digest(KEYS["client"])]),
        "FACEOBF_SEALING_KEY_FILE": str(server_key[1]),
        "FACEOBF_REQUIRE_SEALED": "true",
        "FACEOBF_MASTER_KEY": OLD.to_base64(),
        "FACEOBF_SYNC_INTERVAL_S": "0.2",
    }
    model = make_random_model(tmp_path / "model")
    servers = [
        LocalServer(model=model, db_url=db_url, log=tmp_path / f"s{i}.log", env=env)
        for i in range(2)
    ]
    try:
        for s in servers:
            s.launch()
        for s in servers:
            s.wait_ready()
        pin = server_key[0].fingerprint
        with Client(servers[0].url, KEYS["admin"], server_key_fingerprint=pin) as a:
            a.enroll_payload("ann", ENROL[0])
        tap = ChannelTap()
        http_a = httpx.Client(base_url=servers[0].url, event_hooks={"request": [tap]})
        with Client(servers[0].url, KEYS["client"], http=http_a, server_key_fingerprint=pin) as c:
            assert c.verify_payload("ann", PROBE[0]).subject == "ann"
        http_a.close()
        (captured,) = tap.captures
        auth = {"Authorization": f"Bearer {KEYS['client']}"}
        replay = httpx.post(
            f"{servers[1].url}/v1/verify",
            params={"subject": "ann", "challenge": captured.challenge},
            content=captured.data,
            headers=auth | {"Content-Type": "application/vnd.faceobfuscator.sealed"},
        )
        assert replay.status_code == 409 and "already used" in replay.json()["detail"]
        with Client(servers[1].url, KEYS["client"], server_key_fingerprint=pin) as b:
            assert b.verify_payload("ann", PROBE[0]).subject == "ann"  # decrypted at B
        storage = open_storage(db_url)
        assert all(is_envelope(p) for p in storage.payloads(storage.template_ids()).values())
        storage.close()
    finally:
        for s in servers:
            s.stop()
