"""The SDK against the app (TestClient is an httpx client), with real and stand-in parts."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceobfuscator.client.sdk import APIError, Client
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.server import ServerSettings, create_app
from tests.server.fakes import FakeEmbedder, faces

FACES = faces(3, seed=7)


class CentreAligner:
    """Stands in for face detection: the photos here are aligned faces already."""

    def align(self, rgb: np.ndarray) -> np.ndarray:
        assert rgb.shape == (112, 112, 3)
        return np.array(rgb)  # a warp makes a new array too


def _png(face: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def http(tmp_path, key_hashes) -> Iterator[TestClient]:
    settings = ServerSettings(
        model_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'g.db'}", **key_hashes
    )
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as client:
        yield client


def test_client_enrols_verifies_identifies_and_deletes(http, keys):
    admin = Client("http://testserver", keys["admin"], http=http, aligner=CentreAligner())
    user = Client("http://testserver", keys["client"], http=http, aligner=CentreAligner())
    assert admin.protocol.hash == FakeEmbedder().protocol.hash
    e0 = admin.enroll("ann", _png(FACES[0]))
    e1 = admin.enroll("ann", FACES[0])  # an existing subject and an RGB array
    admin.enroll("ben", FACES[1])
    assert e1.template_id > e0.template_id and admin.get_subject("ann")["templates"] == 2
    v = user.verify("ann", _png(FACES[0]))
    assert v.match and v.score > 0.99
    assert not user.verify("ben", FACES[0]).match
    ident = user.identify(FACES[1], top_k=2)
    assert ident.match == "ben" and [c.subject for c in ident.candidates][0] == "ben"
    assert user.identify(FACES[2]).match is None
    with pytest.raises(APIError) as err:
        user.delete_subject("ann")
    assert err.value.status_code == 403
    admin.delete_subject("ann")
    with pytest.raises(APIError) as err:
        user.verify("ann", FACES[0])
    assert err.value.status_code == 404 and "ann" in err.value.detail
    assert [s["subject"] for s in admin.list_subjects()["subjects"]] == ["ben"]


def test_client_refuses_without_create(http, keys):
    admin = Client("http://testserver", keys["admin"], http=http, aligner=CentreAligner())
    with pytest.raises(APIError) as err:
        admin.enroll("zed", FACES[0], create=False)
    assert err.value.status_code == 404


def test_unreachable_server_is_an_api_error():
    client = Client("http://127.0.0.1:9", "k", timeout=2)
    with pytest.raises(APIError, match="cannot reach"):
        client.health()
    client.close()


def test_real_model_and_real_photo(tmp_path, keys, key_hashes, datasets_root):
    """The whole chain with dlib alignment of an LFW photo and a (random) model directory."""
    make_random_model(tmp_path / "model")
    settings = ServerSettings(
        model_dir=tmp_path / "model", db_url=f"sqlite:///{tmp_path / 'g.db'}", **key_hashes
    )
    photo = datasets_root / "lfw" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"
    with TestClient(create_app(settings)) as http:
        admin = Client("http://testserver", keys["admin"], http=http)
        payload = admin.protect(photo)
        assert len(payload) == http.get("/v1/protocol").json()["payload_bytes"]
        admin.enroll_payload("aaron", payload)
        same = admin.verify_payload("aaron", payload)
        assert same.score == pytest.approx(1.0, abs=1e-5) and same.threshold == 0.3
        again = admin.verify("aaron", photo)  # another obfuscation draw of the same photo
        assert -1.0 <= again.score <= 1.0
        assert "UNTRAINED" in admin.health()["model"]
