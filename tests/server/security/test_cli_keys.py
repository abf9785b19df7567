from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from faceobfuscator.cli import main
from faceobfuscator.protocol.sealing import ServerKeyPair
from faceobfuscator.server.security.envelope import (
    MasterKey,
    TemplateVault,
    decrypt_record,
    record_key_id,
)
from faceobfuscator.server.storage import open_storage

OLD, NEW = MasterKey(bytes(range(32))), MasterKey(bytes(range(1, 33)))
PH = "ab" * 32


def test_new_server_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "server.key"
    assert main(["keys", "new-server", "--out", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pair = ServerKeyPair.load(key)
    assert pair.fingerprint in capsys.readouterr().out
    assert main(["keys", "show", str(key)]) == 0
    out = capsys.readouterr().out
    assert pair.fingerprint in out and pair.public_key.to_base64() in out
    assert main(["keys", "new-server", "--out", str(key)]) == 2  # refuses to overwrite


def test_new_master(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new-master"]) == 0
    captured = capsys.readouterr()
    key = MasterKey.from_base64(captured.out.strip())
    assert key.key_id in captured.err


def _gallery(tmp_path: Path, master: MasterKey | None) -> tuple[str, dict[int, bytes]]:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    storage = open_storage(url)
    vault = TemplateVault(master) if master is not None else None
    items = [(f"s{i % 2}", bytes([i]) * 80) for i in range(5)]
    refs = storage.add_templates(
        items,
        protocol_hash=PH,
        create_subjects=True,
        protect=None
        if vault is None
        else (lambda n, t, p: vault.encrypt(p, subject=n, template_id=t)),
    )
    storage.close()
    return url, {r.template_id: p for r, (_, p) in zip(refs, items, strict=True)}


def _check_under(url: str, plain: dict[int, bytes], key: MasterKey) -> None:
    storage = open_storage(url)
    names = {r.template_id: r.name for r in storage.refs(list(plain))}
    for tid, blob in storage.payloads(list(plain)).items():
        assert record_key_id(blob) == key.key_id
        assert decrypt_record(blob, key, subject=names[tid], record_id=tid) == plain[tid]
    storage.close()


def test_rotate_from_the_settings(tmp_path, monkeypatch, capsys) -> None:
    url, plain = _gallery(tmp_path, OLD)
    monkeypatch.setenv("FACEOBF_MASTER_KEY", NEW.to_base64())
    monkeypatch.delenv("FACEOBF_PREVIOUS_MASTER_KEYS", raising=False)
    assert main(["keys", "rotate", "--db", url]) == 2  # no old key given
    assert "exactly one old key" in capsys.readouterr().err
    monkeypatch.setenv("FACEOBF_PREVIOUS_MASTER_KEYS", json.dumps([OLD.to_base64()]))
    assert main(["keys", "rotate", "--db", url, "--batch", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["old_key_id"], report["new_key_id"], report["moved"]) == (
        OLD.key_id,
        NEW.key_id,
        5,
    )
    _check_under(url, plain, NEW)


def test_rotate_a_plain_gallery(tmp_path, monkeypatch, capsys) -> None:
    url, plain = _gallery(tmp_path, None)
    monkeypatch.setenv("FACEOBF_MASTER_KEY", NEW.to_base64())
    assert main(["keys", "rotate", "--db", url, "--from-plain"]) == 0
    assert json.loads(capsys.readouterr().out)["moved"] == 5
    _check_under(url, plain, NEW)
