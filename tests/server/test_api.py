"""The REST API through TestClient, with a fast stand-in embedder."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from faceobfuscator.errors import StorageError
from faceobfuscator.server import ServerSettings, create_app
from faceobfuscator.server.deps import get_service
from tests.server.fakes import FakeEmbedder
from tests.server.test_service import ENROL, PROBE, _bad_payloads

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def app_client(tmp_path, key_hashes) -> Iterator[TestClient]:
    settings = ServerSettings(
        model_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'g.db'}", **key_hashes
    )
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as client:
        yield client


@pytest.fixture
def admin(keys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['admin']}"}


@pytest.fixture
def user(keys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['client']}"}


def test_protocol_is_public(app_client):
    info = app_client.get("/v1/protocol").json()
    assert info["config_hash"] == FakeEmbedder().protocol.hash
    assert info["config"]["channels"] == [1, 8] and info["format_version"] == 1
    assert info["payload_bytes"] == len(ENROL[0])


def test_openapi_documents_the_octet_stream_bodies(app_client):
    assert app_client.get("/docs").status_code == 200
    spec = app_client.get("/openapi.json").json()
    body = spec["paths"]["/v1/identify"]["post"]["requestBody"]["content"]
    assert "application/octet-stream" in body
    assert {"/v1/verify", "/v1/subjects/{subject}/templates", "/v1/health"} <= set(spec["paths"])


def test_enrol_verify_identify_delete(app_client, admin, user):
    c = app_client
    for i in range(3):
        assert c.post("/v1/subjects", json={"subject": f"p{i}"}, headers=admin).status_code == 201
        r = c.post(f"/v1/subjects/p{i}/templates", content=ENROL[i], headers=admin | OCTET)
        assert r.status_code == 201 and r.json()["subject"] == f"p{i}"
    assert c.get("/v1/subjects/p1", headers=admin).json()["templates"] == 1
    listed = c.get("/v1/subjects", params={"limit": 2}, headers=admin).json()
    assert [s["subject"] for s in listed["subjects"]] == ["p0", "p1"] and listed["total"] == 3

    v = c.post("/v1/verify", params={"subject": "p1"}, content=PROBE[1], headers=user | OCTET)
    assert v.status_code == 200 and v.json()["match"] is True
    v = c.post("/v1/verify", params={"subject": "p1"}, content=PROBE[0], headers=user | OCTET)
    assert v.json()["match"] is False
    ident = c.post("/v1/identify", params={"top_k": 2}, content=PROBE[2], headers=user | OCTET)
    body = ident.json()
    assert body["match"] == "p2" and len(body["candidates"]) == 2
    assert body["candidates"][0]["score"] > 0.99 and body["candidates"][1]["match"] is False

    assert c.delete("/v1/subjects/p2", headers=admin).status_code == 204
    assert c.get("/v1/subjects/p2", headers=admin).status_code == 404
    ident = c.post("/v1/identify", content=PROBE[2], headers=user | OCTET).json()
    assert ident["match"] is None and "p2" not in [x["subject"] for x in ident["candidates"]]
    health = c.get("/v1/health").json()
    assert health["status"] == "ok" and health["templates_indexed"] == 2


def test_template_listing_and_deletion(app_client, admin, user):
    c = app_client
    c.post("/v1/subjects", json={"subject": "a"}, headers=admin)
    tids = [
        c.post("/v1/subjects/a/templates", content=p, headers=admin | OCTET).json()["template_id"]
        for p in ENROL[:2]
    ]
    assert c.get("/v1/subjects/a/templates", headers=admin).json()["template_ids"] == tids
    assert c.delete(f"/v1/subjects/a/templates/{tids[0]}", headers=admin).status_code == 204
    assert c.delete(f"/v1/subjects/a/templates/{tids[0]}", headers=admin).status_code == 404
    v = c.post("/v1/verify", params={"subject": "a"}, content=PROBE[0], headers=user | OCTET)
    assert v.json()["match"] is False  # the matching template is gone
    c.delete(f"/v1/subjects/a/templates/{tids[1]}", headers=admin)
    v = c.post("/v1/verify", params={"subject": "a"}, content=PROBE[1], headers=user | OCTET)
    assert v.status_code == 409 and "no enrolled template" in v.json()["detail"]


def test_missing_wrong_and_insufficient_keys(app_client, admin, user):
    c = app_client
    r = c.post("/v1/identify", content=PROBE[0], headers=OCTET)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = c.post("/v1/identify", content=PROBE[0], headers=OCTET | {"Authorization": "Bearer x"})
    assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
    assert c.get("/v1/subjects", headers=user).status_code == 403
    assert c.post("/v1/subjects", json={"subject": "x"}, headers=user).status_code == 403
    assert c.post("/v1/subjects", json={"subject": "x"}, headers=admin).status_code == 201
    r = c.post("/v1/subjects/x/templates", content=ENROL[0], headers=user | OCTET)
    assert r.status_code == 403 and "administrator" in r.json()["detail"]
    assert c.delete("/v1/subjects/x", headers=user).status_code == 403
    assert c.post("/v1/identify", content=PROBE[0], headers=admin | OCTET).status_code == 200
    assert c.get("/v1/subjects/x", headers=admin).json()["templates"] == 0


@pytest.mark.parametrize("kind", sorted(_bad_payloads()))
def test_bad_payloads_get_422_and_nothing_is_stored(app_client, admin, kind):
    c = app_client
    c.post("/v1/subjects", json={"subject": "a"}, headers=admin)
    r = c.post("/v1/subjects/a/templates", content=_bad_payloads()[kind], headers=admin | OCTET)
    assert r.status_code == 422 and r.json()["detail"]
    assert c.get("/v1/subjects/a", headers=admin).json()["templates"] == 0
    assert c.get("/v1/health").json()["templates_indexed"] == 0


def test_oversized_wrong_type_and_unknown_subject(app_client, admin, user):
    c = app_client
    c.post("/v1/subjects", json={"subject": "a"}, headers=admin)
    r = c.post("/v1/subjects/a/templates", content=ENROL[0] + b"\0" * 10, headers=admin | OCTET)
    assert r.status_code == 413 and str(len(ENROL[0])) in r.json()["detail"]
    r = c.post("/v1/subjects/a/templates", content=ENROL[0], headers=admin)
    assert r.status_code == 415
    r = c.post("/v1/subjects/nobody/templates", content=ENROL[0], headers=admin | OCTET)
    assert r.status_code == 404 and "nobody" in r.json()["detail"]
    r = c.post("/v1/verify", params={"subject": "nobody"}, content=PROBE[0], headers=user | OCTET)
    assert r.status_code == 404
    r = c.post("/v1/identify", params={"top_k": 10**6}, content=PROBE[0], headers=user | OCTET)
    assert r.status_code == 422 and "top_k" in r.json()["detail"]
    assert c.post("/v1/subjects", json={"subject": "a"}, headers=admin).status_code == 409
    assert c.get("/v1/subjects/a", headers=admin).json()["templates"] == 0


def test_validation_errors_do_not_echo_input(app_client, admin):
    secret = "not/a valid name " + "Z" * 50
    r = app_client.post("/v1/subjects", json={"subject": secret}, headers=admin)
    assert r.status_code == 422 and "subject" in r.json()["detail"]
    assert secret not in r.text


def test_keys_and_payloads_stay_out_of_logs_and_errors(app_client, admin, keys, caplog):
    caplog.set_level(logging.DEBUG)
    c = app_client
    c.post("/v1/subjects", json={"subject": "a"}, headers=admin)
    texts = [
        c.post("/v1/subjects/a/templates", content=ENROL[0], headers=admin | OCTET).text,
        c.post("/v1/subjects/a/templates", content=ENROL[0][:-8], headers=admin | OCTET).text,
        c.post(
            "/v1/identify",
            content=PROBE[0],
            headers=OCTET | {"Authorization": "Bearer " + keys["admin"][:-1]},
        ).text,
        c.post("/v1/identify", content=PROBE[0], headers=OCTET | admin).text,
    ]
    logged = caplog.text + "".join(texts)
    for secret in (keys["admin"], keys["admin"][:-1], keys["client"]):
        assert secret not in logged
    sample = ENROL[0][1000:1016]
    for form in (sample.hex(), repr(sample)[2:-1]):
        assert form not in logged
    assert hashlib.sha256(keys["admin"].encode()).hexdigest() not in logged


def test_unavailable_database_gives_503(app_client, user):
    class Down:
        def __getattr__(self, name):
            real = getattr(app_client.app.state.service, name)
            if name in ("identify", "verify"):

                def fail(*a, **k):
                    raise StorageError("connection refused by 10.0.0.1")

                return fail
            return real

    app_client.app.dependency_overrides[get_service] = lambda: Down()
    try:
        r = app_client.post("/v1/identify", content=PROBE[0], headers=user | OCTET)
    finally:
        app_client.app.dependency_overrides.clear()
    assert r.status_code == 503 and "10.0.0.1" not in r.text
