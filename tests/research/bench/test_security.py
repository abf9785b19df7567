from __future__ import annotations

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.payload import payload_size
from faceobfuscator.research.bench.security import security_costs
from faceobfuscator.server.storage import open_storage


def test_costs_report_sizes_and_latencies(tmp_path) -> None:
    db = open_storage(f"sqlite:///{tmp_path / 'c.db'}", synchronous="NORMAL")
    out = security_costs(db, ProtocolConfig(), n=5)
    size = payload_size(ProtocolConfig())
    assert out["payload_bytes"] == size == 100_404
    assert out["sealed_payload_bytes"] - size == 67  # header 19, X25519 enc 32, tag 16
    assert out["stored_template_bytes_encrypted"] - size == 101
    for step in ("client_seal", "server_issue_challenge", "server_open_and_consume",
                 "server_encrypt_template", "server_decrypt_template"):  # fmt: skip
        assert 0 < out[step]["p50_ms"] <= out[step]["p99_ms"]
    db.close()
