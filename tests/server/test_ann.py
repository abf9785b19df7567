"""The approximate (faiss IVF, 8-bit) index: agrees with exact search on a seeded gallery,
and stays equal to what was added and removed online."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from faceobfuscator.server.ann import AnnSpec, IVFVectors, choose_index, default_nlist
from faceobfuscator.server.index import EmbeddingIndex
from tests.server.galleries import fill as _fill
from tests.server.galleries import gallery as _gallery


def test_ivf_recall_against_exact_search_on_a_seeded_gallery():
    rng = np.random.default_rng(0)
    dim, per = 64, 5
    emb, centres, views = _gallery(rng, 4000, per, dim)
    exact = EmbeddingIndex(dim)
    approx = EmbeddingIndex(dim, vectors=IVFVectors(dim, nlist=64, nprobe=16, train_size=4000))
    _fill(exact, emb, per)
    _fill(approx, emb, per)
    assert approx.vectors.trained  # type: ignore[attr-defined]
    probes = views(centres[rng.integers(0, len(centres), 300)])
    top1 = top5 = 0
    for p in probes:
        want = [m.subject_id for m in exact.search(p, 5)]
        got = approx.search(p, 5)
        top1 += got[0].subject_id == want[0]
        top5 += len(set(want) & {m.subject_id for m in got}) / 5
        # a subject's score is its best template's, decoded from 8-bit codes
        if got[0].subject_id == want[0]:
            assert abs(got[0].score - exact.search(p, 1)[0].score) < 0.01
    # measured 1.0 and 0.96 (seed 0); the non-mated places 2-5 are the hard part
    assert top1 / len(probes) >= 0.99
    assert top5 / len(probes) >= 0.93


def test_ivf_add_and_remove_online_keep_the_index_equal_to_the_database():
    rng = np.random.default_rng(1)
    dim, per = 32, 4
    emb, _, _ = _gallery(rng, 1500, per, dim)
    vectors = IVFVectors(dim, nlist=32, nprobe=32, train_size=2000)
    index = EmbeddingIndex(dim, vectors=vectors)
    ids = _fill(index, emb[:1000], per)
    assert not vectors.trained  # searched exactly until train_size templates arrive
    assert set(vectors.ids().tolist()) == set(ids)
    ids += _fill(index, emb[1000:], per, first_id=1001)
    assert vectors.trained and len(vectors) == len(index) == 6000
    gone = ids[::3]
    assert index.remove(gone + [10**9]) == len(gone)
    alive = set(ids) - set(gone)
    assert set(vectors.ids().tolist()) == alive == index.template_ids()
    for t in gone[:50]:  # a removed template is never found, even probing with itself
        found = vectors.search(emb[t - 1], 20)[0]
        assert t not in found.tolist()
    # re-adding a removed id and removing a whole subject online
    index.add([gone[0]], [(gone[0] - 1) // per], [f"s{(gone[0] - 1) // per}"], emb[gone[0] - 1])
    assert index.search(emb[gone[0] - 1], 1)[0].subject_id == (gone[0] - 1) // per
    members = [t for t in alive | {gone[0]} if (t - 1) // per == 7]
    index.remove(members)
    assert "s7" not in index.subject_counts() and index.verify("s7", emb[28]) is None
    assert set(vectors.ids().tolist()) == index.template_ids()


def test_ivf_verify_decodes_the_subjects_templates():
    rng = np.random.default_rng(2)
    emb, _, _ = _gallery(rng, 500, 4, 32)
    exact, approx = EmbeddingIndex(32), EmbeddingIndex(32, vectors=IVFVectors(32, nlist=16))
    _fill(exact, emb, 4)
    _fill(approx, emb, 4)
    for name, row in (("s3", 13), ("s100", 5)):
        assert abs(approx.verify(name, emb[row]) - exact.verify(name, emb[row])) < 0.02


def test_concurrent_searches_during_writes_see_consistent_answers():
    rng = np.random.default_rng(3)
    emb, _, _ = _gallery(rng, 1000, 4, 32)
    index = EmbeddingIndex(32, vectors=IVFVectors(32, nlist=16, nprobe=16))
    _fill(index, emb, 4)
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                for m in index.search(emb[0], 3):
                    assert m.name == f"s{m.subject_id}"
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(1, 4000, 200):
        index.remove(list(range(start, start + 100)))
    stop.set()
    for t in threads:
        t.join()
    assert not errors and len(index) == 2000


def test_choose_index_by_size_and_setting():
    assert choose_index(16, 10, kind="auto", min_templates=100).kind == "exact"
    assert choose_index(16, 100, kind="auto", min_templates=100).kind == "pq4-scan+fp16"
    assert choose_index(16, 100, kind="ivf").kind == "ivf-sq8"
    assert choose_index(16, 10**6, kind="exact").kind == "exact"
    ivf = choose_index(16, 10, kind="ivf", spec=AnnSpec(nlist=8, nprobe=99))
    assert ivf.vectors.nlist == 8 and ivf.vectors.nprobe == 8  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="known: auto, exact, ivf, pq"):
        choose_index(16, 10, kind="hnsw")
    assert [default_nlist(n) for n in (100, 10**6, 10**8)] == [64, 1024, 8192]
