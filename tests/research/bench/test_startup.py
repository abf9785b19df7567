"""Start-up of a large gallery from the encrypted embedding cache."""

from __future__ import annotations

from faceobfuscator.research.bench.startup import startup_bench


def test_startup_bench_loads_every_template_from_the_cache(tmp_path):
    out = startup_bench(3000, dim=16, kind="ivf", workdir=tmp_path)
    assert out["indexed"] == out["templates"] == 3000 and out["index"] == "ivf-sq8"
    assert out["sealed_embedding_bytes"] == 12 + 16 * 4 + 16  # nonce, float32, tag
    assert out["startup_s"] > 0 and list(tmp_path.iterdir()) == []
