"""``client_scores`` off: no similarity score leaves the server for a client key."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from faceobfuscator.server import ServerSettings, create_app
from tests.server.fakes import FakeEmbedder
from tests.server.test_service import ENROL, PROBE

OCTET = {"Content-Type": "application/octet-stream"}


def _numbers(body: object) -> list[float]:
    """Every float anywhere in a JSON body."""
    if isinstance(body, dict):
        return [x for v in body.values() for x in _numbers(v)]
    if isinstance(body, list):
        return [x for v in body for x in _numbers(v)]
    return [body] if isinstance(body, float) else []


def test_client_keys_get_decisions_only_and_admins_keep_scores(tmp_path, keys, key_hashes):
    settings = ServerSettings(
        model_dir=tmp_path,
        db_url=f"sqlite:///{tmp_path / 'g.db'}",
        client_scores=False,
        **key_hashes,
    )
    user = {"Authorization": f"Bearer {keys['client']}"} | OCTET
    admin = {"Authorization": f"Bearer {keys['admin']}"} | OCTET
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as c:
        for i in range(3):
            auth = {"Authorization": admin["Authorization"]}
            assert (
                c.post("/v1/subjects", json={"subject": f"p{i}"}, headers=auth).status_code == 201
            )
            c.post(f"/v1/subjects/p{i}/templates", content=ENROL[i], headers=admin)
        threshold = FakeEmbedder().threshold

        v = c.post("/v1/verify", params={"subject": "p1"}, content=PROBE[1], headers=user)
        assert v.json() == {"subject": "p1", "score": None, "match": True, "threshold": threshold}
        v = c.post("/v1/verify", params={"subject": "p1"}, content=PROBE[0], headers=user)
        assert v.json()["match"] is False and v.json()["score"] is None

        ident = c.post("/v1/identify", params={"top_k": 3}, content=PROBE[2], headers=user)
        assert ident.json() == {
            "candidates": [{"subject": "p2", "score": None, "match": True}],
            "match": "p2",
            "threshold": threshold,
        }
        # nothing but the threshold is a number in any answer to the client key
        for r in (v, ident):
            assert _numbers(json.loads(r.text)) == [threshold]

        full = c.post("/v1/identify", params={"top_k": 3}, content=PROBE[2], headers=admin)
        scores = [x["score"] for x in full.json()["candidates"]]
        assert len(scores) == 3 and scores[0] > 0.99 and all(isinstance(s, float) for s in scores)
