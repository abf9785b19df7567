"""The approximate-against-exact search rows of ``faceobf bench server``."""

from __future__ import annotations

import numpy as np
import pytest

from faceobfuscator.research.bench.ann import SyntheticGallery, ann_bench, fit_face_model
from faceobfuscator.server.ann import AnnSpec


def test_synthetic_gallery_is_seeded_and_chunking_does_not_change_it():
    g = SyntheticGallery(60, 16, per_subject=10, spectrum=1.0, seed=3)
    whole = g.chunk(0, 60)
    parts = np.concatenate([g.chunk(0, 20), g.chunk(20, 60)])
    # each chunk draws its own noise, but subjects' centres are the same everywhere
    assert np.allclose(np.linalg.norm(whole, axis=1), 1, atol=1e-5)
    same = (whole[:20] * parts[:20]).sum(1)
    assert np.allclose(same, 1, atol=1e-5)
    mates = (whole[25] * parts[28]).sum()  # subject 2 in both
    strangers = (whole[25] * whole[45]).sum()
    assert mates > 0.4 > strangers
    assert np.array_equal(g.probes(5), SyntheticGallery(60, 16, spectrum=1.0, seed=3).probes(5))


def test_ann_bench_reports_recall_latency_and_memory_against_exact():
    out = ann_bench(
        6000, dim=32, kind="ivf", spectrum=1.0, knobs=(2, 32), spec=AnnSpec(), queries=60,
        exact_timed=5, chunk=2000, per_subject=10,
    )  # fmt: skip
    assert out["templates"] == 6000 and out["nlist"] == 64 and out["index"] == "ivf-sq8"
    few, all_cells = out["rows"]
    # probing half the cells finds what exact search finds
    assert all_cells["nprobe"] == 32 and all_cells["recall_top1"] >= 0.98
    assert few["recall_top5"] <= all_cells["recall_top5"]
    assert 32 + 8 <= out["index_bytes_per_template"] < 32 * 4
    assert out["exact_search_ms"]["count"] == 5
    assert 0 < few["search_ms"]["p50_ms"] <= few["search_ms"]["p99_ms"]


def _two_covariance_sample(rng: np.random.Generator, subjects: int, per: int, dim: int):
    centres = 0.5 * rng.standard_normal((subjects, dim)) * np.linspace(1.0, 0.2, dim)
    emb = np.repeat(centres, per, axis=0) + 0.15 * rng.standard_normal((subjects * per, dim))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), np.repeat(np.arange(subjects), per)


def test_a_gallery_fitted_to_embeddings_reproduces_their_cosines():
    emb, labels = _two_covariance_sample(np.random.default_rng(0), 800, 3, 24)
    model = fit_face_model(emb, labels, source="test")
    assert model.mean.shape == (24,) and model.between.shape == model.within.shape == (24, 24)
    real = model.stats
    assert real["subjects"] == 800 and real["embeddings"] == 2400
    fake = SyntheticGallery(3000, 24, per_subject=3, model=model, seed=1).stats()
    for key in ("genuine_cos_mean", "impostor_cos_mean", "impostor_cos_std"):
        assert abs(fake[key] - real[key]) < 0.03, key
    assert real["genuine_cos_mean"] > real["impostor_cos_mean"] + 0.3
    with pytest.raises(ValueError, match="two or more"):
        fit_face_model(emb[:5], np.arange(5))
    with pytest.raises(ValueError, match="24-d face model for a 16-d"):
        SyntheticGallery(10, 16, model=model)


def test_ann_bench_pq_finds_the_exact_top5_on_a_fitted_gallery():
    emb, labels = _two_covariance_sample(np.random.default_rng(2), 500, 3, 32)
    model = fit_face_model(emb, labels)
    out = ann_bench(
        30_000, dim=32, model=model, knobs=(300,), queries=40, exact_timed=3, chunk=10_000
    )
    assert out["index"] == "pq4-scan+fp16" and out["gallery"] == "fitted"
    (row,) = out["rows"]
    assert row["shortlist"] == 300 and row["recall_top1"] == 1.0 and row["recall_top5"] >= 0.98
    # 8 bytes of codes + 64 of float16 + an 8-byte id
    assert out["index_bytes_per_template"] == 80.0


def test_a_gallery_is_fitted_to_a_teacher_pack_without_its_unlabelled_rows(tmp_path):
    from faceobfuscator.research.bench.ann import load_face_model_from_pack

    emb, labels = _two_covariance_sample(np.random.default_rng(2), 300, 3, 16)
    labels = labels.copy()
    labels[:60] = -1  # unlabelled extra faces (distillation only)
    pack = tmp_path / "pack.npz"
    np.savez(pack, teacher_sface=emb.astype(np.float16), labels=labels)
    model = load_face_model_from_pack(pack)
    assert model.stats["embeddings"] == 840 and model.stats["subjects"] == 280
    assert model.mean.shape == (16,)
    with pytest.raises(ValueError, match="no dlib embeddings"):
        load_face_model_from_pack(pack, teacher="dlib")
