"""The approximate-against-exact search rows of ``faceobf bench server``."""

from __future__ import annotations

import numpy as np

from faceobfuscator.research.bench.ann import SyntheticGallery, ann_bench
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
        6000, dim=32, spectrum=1.0, nprobes=(2, 32), spec=AnnSpec(), queries=60,
        exact_timed=5, chunk=2000,
    )  # fmt: skip
    assert out["templates"] == 6000 and out["nlist"] == 64 and out["index"] == "ivf-sq8"
    few, all_cells = out["rows"]
    # probing half the cells finds what exact search finds
    assert all_cells["nprobe"] == 32 and all_cells["recall_top1"] >= 0.98
    assert few["recall_top5"] <= all_cells["recall_top5"]
    assert 32 + 8 <= out["index_bytes_per_template"] < 32 * 4
    assert out["exact_search_ms"]["count"] == 5
    assert 0 < few["search_ms"]["p50_ms"] <= few["search_ms"]["p99_ms"]
