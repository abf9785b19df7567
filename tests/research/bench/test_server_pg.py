"""The PostgreSQL rows of ``faceobf bench server``: a COPY bulk load the server starts
from without running the model, and identify through several API processes."""

from __future__ import annotations

import os
import secrets

import numpy as np
import pytest

from faceobfuscator.research.bench.server import synthetic_payloads
from faceobfuscator.research.bench.server_pg import copy_fill_postgres, postgres_load
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.keys import new_api_key, new_cache_key
from faceobfuscator.server.storage import open_storage


@pytest.fixture
def empty_pg(postgres_url: str) -> str:
    import psycopg

    name = f"faceobf_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name


def test_copy_fill_loads_subjects_templates_and_sealed_embeddings(empty_pg):
    sealer = EmbeddingSealer(secrets.token_bytes(32), model_hash="m", dim=8)
    copy_fill_postgres(empty_pg, 25, sealer=sealer, protocol_hash="p", per_subject=10)
    storage = open_storage(empty_pg)
    try:
        assert storage.count() == (3, 25)
        assert storage.protocol_hashes() == ["p"]
        (page,) = list(storage.iter_refs_sealed("m", batch=100))
        ok, emb = sealer.open_many(page.template_ids, page.sealed)
        assert ok == list(range(25)) and emb.shape == (25, 8)
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
        assert page.names[:11] == ["synthetic-0000000"] * 10 + ["synthetic-0000001"]
        with pytest.raises(ValueError, match="already holds templates"):
            copy_fill_postgres(empty_pg, 5, sealer=sealer, protocol_hash="p")
    finally:
        storage.close()


@pytest.mark.slow
def test_two_api_processes_on_one_postgres_answer_identify_without_errors(empty_pg, tmp_path):
    from faceobfuscator.recognition.modeldir import make_random_model
    from faceobfuscator.server.embedder import ModelEmbedder

    model_dir = make_random_model(tmp_path / "model")
    model = ModelEmbedder(model_dir)
    cache_key = new_cache_key()
    key = __import__("base64").urlsafe_b64decode(cache_key + "=" * (-len(cache_key) % 4))
    sealer = EmbeddingSealer(key, model_hash=model.model_hash, dim=model.dim)
    copy_fill_postgres(empty_pg, 200, sealer=sealer, protocol_hash=model.protocol.hash)
    (row,) = postgres_load(
        empty_pg, model_dir, admin=new_api_key(), cache_key=cache_key,
        pool=synthetic_payloads(4, model.protocol), processes=(2,), clients=2,
        duration_s=3.0, workdir=tmp_path,
    )  # fmt: skip
    assert row["processes"] == 2 and row["indexed_at_start"] == 200
    assert row["errors"] == 0 and row["identify"]["count"] > 0
