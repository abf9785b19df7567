"""``faceobf client``, ``faceobf apikey`` and ``faceobf serve``'s settings handling."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceobfuscator.cli import main
from faceobfuscator.client.sdk import Client
from faceobfuscator.server import ServerSettings, create_app
from faceobfuscator.server.keys import KeyRing, Role
from tests.client.test_sdk import CentreAligner
from tests.server.fakes import FakeEmbedder, faces


@pytest.fixture
def photos(tmp_path):
    paths = []
    for i, face in enumerate(faces(2, seed=11)):
        path = tmp_path / f"face{i}.png"
        Image.fromarray(face).save(path)
        paths.append(path)
    return paths


def test_client_commands(tmp_path, keys, key_hashes, photos, monkeypatch, capsys):
    settings = ServerSettings(
        model_dir=tmp_path, db_url=f"sqlite:///{tmp_path / 'g.db'}", **key_hashes
    )
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as http:

        def client(args):
            key = args.key_file.read_text().strip() if args.key_file else keys["client"]
            return Client(args.url, key, http=http, aligner=CentreAligner())

        monkeypatch.setattr("faceobfuscator.cli.client._client", client)
        key_file = tmp_path / "admin.key"
        key_file.write_text(keys["admin"] + "\n")
        assert main(["client", "--key-file", str(key_file), "enroll", "ann", str(photos[0])]) == 0
        enrolled = json.loads(capsys.readouterr().out)["enrolled"]
        assert enrolled[0]["subject"] == "ann" and enrolled[0]["image"] == str(photos[0])
        assert main(["client", "verify", "ann", str(photos[0])]) == 0
        assert json.loads(capsys.readouterr().out)["match"] is True
        assert main(["client", "verify", "ann", str(photos[1])]) == 1  # no match
        capsys.readouterr()
        assert main(["client", "identify", str(photos[0]), "--top-k", "1"]) == 0
        assert json.loads(capsys.readouterr().out)["match"] == "ann"
        assert main(["client", "delete", "ann"]) == 2  # a client key may not delete
        assert "403" in capsys.readouterr().err


def test_client_needs_a_key(monkeypatch, capsys, photos):
    monkeypatch.delenv("FACEOBF_API_KEY", raising=False)
    assert main(["client", "identify", str(photos[0])]) == 2
    assert "FACEOBF_API_KEY" in capsys.readouterr().err


def test_apikey_prints_a_key_and_its_digest(capsys):
    assert main(["apikey", "--role", "admin"]) == 0
    out = capsys.readouterr().out.splitlines()
    key = out[0].rsplit(" ", 1)[1]
    digests = json.loads(out[1].split("=", 1)[1].strip("'"))
    assert KeyRing(admin=digests).role_of(key) is Role.ADMIN
    assert main(["apikey", "--cache-key"]) == 0
    line = capsys.readouterr().out.strip()
    settings = ServerSettings(model_dir=".", cache_key=line.split("=", 1)[1])
    assert len(settings.cache_key_bytes() or b"") == 32


def test_settings_from_env_file_and_environment(tmp_path, monkeypatch):
    env = tmp_path / "server.env"
    env.write_text(f"FACEOBF_MODEL_DIR={tmp_path}\nFACEOBF_DB_URL=sqlite:///{tmp_path}/a.db\n")
    monkeypatch.setenv("FACEOBF_DB_URL", f"sqlite:///{tmp_path}/b.db")
    monkeypatch.setenv("FACEOBF_CLIENT_KEY_HASHES", json.dumps(["ab" * 32]))
    s = ServerSettings.load(env)
    assert s.model_dir == tmp_path and s.db_url.endswith("b.db")  # environment wins
    assert s.client_key_hashes == ("ab" * 32,)
    with pytest.raises(ValueError, match="SHA-256 hex digests"):
        ServerSettings(model_dir=tmp_path, admin_key_hashes=("fo_not-a-digest",))
    with pytest.raises(ValueError, match="sqlite:///"):
        ServerSettings(model_dir=tmp_path, db_url="mysql://x")
    with pytest.raises(ValueError, match="32 bytes"):
        ServerSettings(model_dir=tmp_path, cache_key="c2hvcnQ")
    assert "c2hvcnQ" not in repr(ServerSettings(model_dir=tmp_path, cache_key="A" * 43))
