"""The gallery service over both back ends, with a fast stand-in embedder."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from faceobfuscator.errors import (
    ModelMismatchError,
    NoTemplatesError,
    PayloadError,
    PayloadTooLargeError,
    UnknownSubjectError,
)
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.service import GalleryService
from faceobfuscator.server.storage import open_storage
from tests.server.fakes import FakeEmbedder, faces, payloads

FACES = faces(4)
ENROL = payloads(FACES, seed=1)
PROBE = payloads(FACES, seed=2)  # the same faces, other obfuscation draws


def _service(db_url, embedder=None, key=None) -> GalleryService:
    embedder = embedder or FakeEmbedder()
    sealer = None
    if key is not None:
        sealer = EmbeddingSealer(key, model_hash=embedder.model_hash, dim=embedder.dim)
    service = GalleryService(open_storage(db_url), embedder, sealer=sealer)
    service.start()
    return service


def _enrol_all(service: GalleryService, n: int = 3) -> None:
    for i in range(n):
        service.create_subject(f"p{i}")
        service.enrol(f"p{i}", ENROL[i])


def test_enrol_verify_identify(db_url):
    service = _service(db_url)
    try:
        _enrol_all(service)
        v = service.verify("p1", PROBE[1])
        assert v.match and v.score > 0.99 and v.threshold == 0.9
        assert not service.verify("p1", PROBE[2]).match
        result = service.identify(PROBE[2], top_k=2)
        assert [m.subject for m in result.candidates][0] == "p2"
        assert len(result.candidates) == 2 and result.best is not None
        stranger = service.identify(PROBE[3], top_k=3)
        assert stranger.best is None and len(stranger.candidates) == 3
    finally:
        service.close()


def _bad_payloads() -> dict[str, bytes]:
    good = PROBE[0]
    header = 4 + 2 + 1 + 1 + 32
    nan = bytearray(good)
    nan[-4:] = struct.pack("<f", float("nan"))
    return {
        "empty": b"",
        "truncated": good[:-4],
        "magic": b"XXXX" + good[4:],
        "version": good[:4] + struct.pack("<H", 99) + good[6:],
        "hash": good[:8] + bytes(32) + good[header:],
        "shape": good[:header] + struct.pack("<3I", 2, 56, 224) + good[header + 12 :],
        "nan": bytes(nan),
    }


@pytest.mark.parametrize("kind", sorted(_bad_payloads()))
def test_bad_payload_is_refused_and_nothing_is_stored(tmp_path, kind):
    service = _service(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        service.create_subject("alice")
        with pytest.raises(PayloadError):
            service.enrol("alice", _bad_payloads()[kind])
        assert service.storage.count() == (1, 0)
        assert service.storage.last_seq() == 0 and len(service.index) == 0
    finally:
        service.close()


def test_too_large_payload_names_the_limit(tmp_path):
    service = _service(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        with pytest.raises(PayloadTooLargeError, match=str(len(PROBE[0]))):
            service.identify(PROBE[0] + b"\0")
    finally:
        service.close()


def test_unknown_and_empty_subjects(tmp_path):
    service = _service(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        with pytest.raises(UnknownSubjectError):
            service.verify("nobody", PROBE[0])
        with pytest.raises(UnknownSubjectError):
            service.enrol("nobody", ENROL[0])
        service.create_subject("empty")
        with pytest.raises(NoTemplatesError):
            service.verify("empty", PROBE[0])
        assert service.storage.count() == (1, 0)
    finally:
        service.close()


def test_two_processes_see_each_others_enrolments_and_deletions(db_url):
    a, b = _service(db_url), _service(db_url)
    try:
        _enrol_all(a)
        assert b.identify(PROBE[1], top_k=1).best.subject == "p1"  # type: ignore[union-attr]
        assert b.verify("p1", PROBE[1]).match
        b.delete_subject("p1")
        top = a.identify(PROBE[1], top_k=5)
        assert "p1" not in [m.subject for m in top.candidates] and top.best is None
        with pytest.raises(UnknownSubjectError):
            a.verify("p1", PROBE[1])
        want = set(a.storage.template_ids())
        assert a.index.template_ids() == want == b.index.template_ids() and len(want) == 2
    finally:
        a.close()
        b.close()


def test_sealed_cache_spares_the_model_and_is_rebuilt_for_another_model(db_url):
    key = os.urandom(32)
    first = _service(db_url, FakeEmbedder(seed=0), key)
    _enrol_all(first)
    first.close()

    again = FakeEmbedder(seed=0)
    service = _service(db_url, again, key)
    assert again.calls == 0 and len(service.index) == 3
    assert service.verify("p0", PROBE[0]).match
    service.close()

    other = FakeEmbedder(seed=1)  # another model: the cache no longer applies
    service = _service(db_url, other, key)
    assert other.calls == 3
    ids = service.storage.template_ids()
    sealed = service.storage.sealed_embeddings(ids, other.model_hash)
    assert sorted(sealed) == ids
    service.close()

    wrong_key = FakeEmbedder(seed=1)
    service = _service(db_url, wrong_key, os.urandom(32))
    assert wrong_key.calls == 3  # rows that do not open are recomputed
    service.close()


def test_cached_embedding_equals_the_models(tmp_path):
    key = os.urandom(32)
    url = f"sqlite:///{tmp_path / 'g.db'}"
    service = _service(url, key=key)
    _enrol_all(service, 1)
    tid = service.storage.template_ids()[0]
    sealer = service.sealer
    assert sealer is not None
    sealed = service.storage.sealed_embeddings([tid], sealer.model_hash)[tid]
    np.testing.assert_allclose(sealer.open(tid, sealed), service.embed_payload(ENROL[0]), atol=1e-6)
    service.close()


def test_gallery_of_another_protocol_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    storage = open_storage(url)
    storage.add_templates([("a", b"x")], protocol_hash="cd" * 32, create_subjects=True)
    storage.close()
    service = GalleryService(open_storage(url), FakeEmbedder())
    with pytest.raises(ModelMismatchError, match="cdcdcdcdcdcd"):
        service.start()
    service.close()


def test_micro_batched_identifies_answer_as_unbatched_ones_with_fewer_model_calls(tmp_path):
    import threading

    class Counting(FakeEmbedder):
        batches = 0

        def embed(self, features: np.ndarray) -> np.ndarray:
            Counting.batches += 1
            return super().embed(features)

    url = f"sqlite:///{tmp_path / 'g.db'}"
    plain = _service(url)
    try:
        _enrol_all(plain, 4)
        want = [plain.identify(p, top_k=2) for p in PROBE]
    finally:
        plain.close()
    embedder = Counting()
    service = GalleryService(open_storage(url), embedder, batch_window_s=0.05)
    service.start()
    got: dict[int, object] = {}
    try:
        threads = [
            threading.Thread(target=lambda i=i: got.__setitem__(i, service.identify(PROBE[i % 4], top_k=2)))
            for i in range(8)
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        service.close()
    for i in range(8):  # batched rows may differ in the last float bits
        g, w = got[i].candidates, want[i % 4].candidates  # type: ignore[attr-defined]
        assert [c.subject for c in g] == [c.subject for c in w]
        assert np.allclose([c.score for c in g], [c.score for c in w], atol=1e-5)
    assert embedder.calls == 8 + 4 and Counting.batches < 4 + 8  # start-up embeds 4
