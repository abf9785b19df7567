"""The SDK against the app (TestClient is an httpx client), with real and stand-in parts."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceobfuscator.client.detection import Face
from faceobfuscator.client.sdk import APIError, BatchEnrolmentError, Client
from faceobfuscator.errors import MultipleFacesError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.server import ServerSettings, create_app
from tests.server.fakes import FakeEmbedder, faces

FACES = faces(3, seed=7)


class CentreAligner:
    """Stands in for face detection: the photos here are aligned faces already."""

    def faces(self, rgb: np.ndarray) -> list[Face]:
        assert rgb.shape == (112, 112, 3)
        points = np.array(ProtocolConfig().template, dtype=np.float64)
        return [Face(box=(0.0, 0.0, 112.0, 112.0), landmarks=points, score=1.0)]

    def choose(self, faces: list[Face], shape: tuple[int, ...], *, select: str) -> Face:
        return faces[0]

    def warp(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
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


def test_batch_enrolment_is_all_or_nothing(http, keys, monkeypatch):
    admin = Client("http://testserver", keys["admin"], http=http, aligner=CentreAligner())
    photos = [_png(FACES[0]), FACES[1], b"not an image", _png(FACES[2])]
    with pytest.raises(BatchEnrolmentError, match=r"1 of 4 photos failed \(<12 bytes>: ") as e:
        admin.enroll_many("ann", photos)
    assert [p.source for p in e.value.problems] == ["<12 bytes>"]
    with pytest.raises(APIError) as missing:
        admin.get_subject("ann")  # nothing was sent: not even the subject
    assert missing.value.status_code == 404

    done = admin.enroll_many("ann", [FACES[0], FACES[1]])
    assert [d.subject for d in done] == ["ann", "ann"] and done[0].face.faces == 1
    real = admin.enroll_payload
    calls = []

    def refuse_second(subject, payload, **kw):
        calls.append(subject)
        if len(calls) == 2:
            raise APIError(422, "payload refused")
        return real(subject, payload, **kw)

    monkeypatch.setattr(admin, "enroll_payload", refuse_second)
    with pytest.raises(BatchEnrolmentError, match="payload refused"):
        admin.enroll_many("ann", [FACES[2], FACES[1], FACES[0]])
    assert admin.get_subject("ann")["templates"] == 2  # the first of the batch rolled back


def test_two_people_in_a_photo(http, keys, datasets_root):
    """Enrolment refuses a photo of two similar-sized faces and says how many; verification
    and identification use the largest and say which (its box)."""
    from faceobfuscator.client.images import load_image

    a = load_image(datasets_root / "lfw" / "Tony_Blair/Tony_Blair_0001.jpg")
    b = load_image(datasets_root / "lfw" / "Angelina_Jolie/Angelina_Jolie_0001.jpg")
    pair = np.full((176, 352, 3), 128, np.uint8)
    pair[:, :176] = a
    pair[:170, 176:346] = np.asarray(Image.fromarray(b).resize((170, 170)))
    admin = Client("http://testserver", keys["admin"], http=http)
    with pytest.raises(MultipleFacesError, match="found 2 faces of similar size"):
        admin.enroll("tony", pair)
    assert admin.enroll("tony", a).face.faces == 1
    left = admin.enroll("tony", pair, select="largest").face
    assert left.faces == 2 and left.box[0] < 176
    user = Client("http://testserver", keys["client"], http=http)
    v = user.verify("tony", pair)
    assert v.face is not None and v.face.box[0] < 176 and v.face.faces == 2
    right = user.identify(pair, select="central", top_k=1).to_dict()["face"]
    assert right["faces"] == 2 and len(right["box"]) == 4


def test_unicode_names_round_trip_and_refusals_are_words(http, keys):
    admin = Client("http://testserver", keys["admin"], http=http, aligner=CentreAligner())
    user = Client("http://testserver", keys["client"], http=http, aligner=CentreAligner())
    for i, name in enumerate(["José Müller", "O'Brien", "张伟", "Ελένη"]):
        assert admin.enroll(name, FACES[i % 3]).subject == name
        assert user.verify(name, FACES[i % 3]).match
        assert admin.get_subject(name)["subject"] == name
    nfd = "Jose\u0301 Müller"  # the same name typed with a combining accent
    assert admin.enroll(nfd, FACES[0]).subject == "José Müller"
    assert admin.get_subject("José Müller")["templates"] == 2
    names = {s["subject"] for s in admin.list_subjects()["subjects"]}
    assert names == {"José Müller", "O'Brien", "张伟", "Ελένη"}
    raw = http.post("/v1/subjects", json={"subject": "bad\x07name"}, headers=admin._auth)
    assert raw.status_code == 422
    assert "control character" in raw.json()["detail"] and "[A-Za-z" not in raw.json()["detail"]
    admin.delete_subject("O'Brien")
    with pytest.raises(APIError) as err:
        admin.get_subject("O'Brien")
    assert err.value.status_code == 404
