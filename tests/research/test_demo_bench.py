"""The demo's and the benchmark's building blocks; their full runs are slow tests."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from faceobfuscator import ProtocolConfig
from faceobfuscator.research.bench.server import fill_gallery, run_server_bench, synthetic_payloads
from faceobfuscator.research.demo.run import pick_people, run_demo, stored_view
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.storage import open_storage
from tests.server.fakes import faces, payloads


def test_pick_people_from_the_lfw_test_folds(datasets_root):
    enrolled, strangers = pick_people(
        datasets_root, n_enrolled=5, n_strangers=4, enrol_photos=2, probes=1, seed=1
    )
    names = [p.name for p in enrolled] + [p.name for p in strangers]
    assert len(set(names)) == 9
    for p in enrolled:
        assert len(p.enrol) == 2 and len(p.probes) == 1
        assert set(p.enrol).isdisjoint(p.probes) and all(x.parent.name == p.name for x in p.enrol)
    from faceobfuscator.research.data.datasets import lfw_pairs

    train = {
        part.split("/")[0]
        for q in lfw_pairs(datasets_root / "lfw_meta")
        if q.fold < 6
        for part in (q.path_a, q.path_b)
    }
    assert train.isdisjoint(names)  # folds are identity-disjoint


def test_stored_view_shows_both_channels():
    config = ProtocolConfig()
    payload = payloads(faces(1))[0]
    for kind in ("values", "log_magnitude"):
        img = stored_view(payload, config, kind=kind)
        assert img.dtype == np.uint8 and img.shape == (112, 2 * 112 + 4, 3)
        assert img[:, :112].std() > 10  # not blank
    with pytest.raises(ValueError, match="kind"):
        stored_view(payload, config, kind="faces")


def test_fill_gallery_stores_payloads_and_sealed_embeddings(tmp_path):
    config = ProtocolConfig()
    pool = synthetic_payloads(3, config)
    sealer = EmbeddingSealer(os.urandom(32), model_hash="m", dim=8)
    url = f"sqlite:///{tmp_path / 'g.db'}"
    fill_gallery(url, 25, pool, sealer=sealer, protocol_hash=config.hash, per_subject=10, batch=7)
    storage = open_storage(url)
    try:
        assert storage.count() == (3, 25)
        ids = storage.template_ids()
        assert set(storage.payloads(ids[:3]).values()) == set(pool)
        sealed = storage.sealed_embeddings(ids, "m")
        norms = [np.linalg.norm(sealer.open(t, sealed[t])) for t in ids]
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    finally:
        storage.close()


@pytest.mark.slow
def test_server_bench_runs_without_errors(tmp_path):
    result = run_server_bench(
        sizes=(200,), clients=2, duration_s=4, search_size=20_000, workdir=tmp_path
    )
    json.dumps(result)
    (gallery,) = result["galleries"]
    assert gallery["errors"] == 0 and gallery["indexed_at_start"] == 200
    assert gallery["identify"]["count"] > 0 and gallery["requests_per_s"] > 0
    assert result["search"]["numpy_ms_per_query_median"] > 0


@pytest.mark.slow
def test_demo_writes_a_report(tmp_path, datasets_root):
    report = run_demo(root=datasets_root, out=tmp_path, n_enrolled=4, n_strangers=2)
    data = json.loads((tmp_path / "server_demo.json").read_text())
    assert data["identification"]["probes"] == 8 and data["erasure"]["still_found"] is False
    text = report.read_text()
    assert "RANDOMLY INITIALISED" in text or not data["untrained_model"]
    # examples: the enrolled people but the erased one, four images each
    assert text.count("data:image/png;base64,") == 3 * 4
