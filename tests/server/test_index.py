"""The in-memory index: exact top-k by subject, consistent after removals."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from faceobfuscator.server.index import EmbeddingIndex, top_k_rows


def _naive_top_k(scores: np.ndarray, owners: np.ndarray, k: int) -> list[tuple[int, float]]:
    best: dict[int, float] = {}
    for s, o in zip(scores.tolist(), owners.tolist(), strict=True):
        best[o] = max(best.get(o, -np.inf), s)
    return sorted(best.items(), key=lambda x: -x[1])[:k]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    owners=st.integers(1, 40),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
)
def test_top_k_rows_matches_a_naive_ranking(n, owners, k, seed):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal(n).astype(np.float32)
    own = rng.integers(0, owners, n)
    got = top_k_rows(scores, own, k)
    want = _naive_top_k(scores, own, k)
    assert [o for _, o in got] == [o for o, _ in want]
    assert [float(scores[r]) for r, _ in got] == [s for _, s in want]


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_search_and_verify_after_adds_and_removals():
    rng = np.random.default_rng(0)
    d = 16
    emb = _unit(rng, 50, d)
    index = EmbeddingIndex(d)
    sids = [i % 10 for i in range(50)]
    assert index.add(list(range(50)), sids, [f"s{s}" for s in sids], emb) == 50
    assert index.add([3], [3], ["s3"], emb[3:4]) == 0  # present already
    gone = list(range(0, 50, 3))
    assert index.remove(gone + [999]) == len(gone)
    keep = [i for i in range(50) if i not in gone]
    assert index.template_ids() == set(keep) and len(index) == len(keep)
    probe = emb[7]
    want = _naive_top_k(emb[keep] @ probe, np.array([sids[i] for i in keep]), 4)
    got = index.search(probe, 4)
    assert [m.subject_id for m in got] == [o for o, _ in want]
    np.testing.assert_allclose([m.score for m in got], [s for _, s in want], rtol=1e-6)
    assert got[0].name == "s7" and abs(got[0].score - 1.0) < 1e-5
    assert abs(index.verify("s7", probe) - 1.0) < 1e-5
    assert index.verify("nobody", probe) is None


def test_removing_a_subjects_last_template_forgets_the_subject():
    index = EmbeddingIndex(4)
    e = np.eye(4, dtype=np.float32)
    index.add([1, 2, 3], [10, 10, 20], ["a", "a", "b"], e[:3])
    index.remove([1])
    assert index.subject_counts() == {"a": 1, "b": 1}
    index.remove([2])
    assert index.subject_counts() == {"b": 1}
    assert index.verify("a", e[1]) is None
    assert [m.name for m in index.search(e[1], 5)] == ["b"]


def test_search_on_an_empty_index_finds_nobody():
    assert EmbeddingIndex(8).search(np.ones(8, np.float32), 3) == []
