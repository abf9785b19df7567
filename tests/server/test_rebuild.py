"""A changed model: start-up answers at once and embeds the gallery in the background,
with progress in /v1/health; an erasure during the rebuild stays erased."""

from __future__ import annotations

import os
import time

import numpy as np

from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.routers.meta import health
from faceobfuscator.server.service import GalleryService
from faceobfuscator.server.storage import open_storage
from tests.server.fakes import FakeEmbedder, faces, payloads

KEY = os.urandom(32)
ENROL = payloads(faces(6), seed=1)


class SlowEmbedder(FakeEmbedder):
    def embed(self, features: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return super().embed(features)


def _service(url: str, embedder: FakeEmbedder, background_from: int | None) -> GalleryService:
    sealer = EmbeddingSealer(KEY, model_hash=embedder.model_hash, dim=embedder.dim)
    service = GalleryService(
        open_storage(url), embedder, sealer=sealer, embed_batch=4, background_from=background_from
    )
    service.start()
    return service


def _db_ids(url: str) -> set[int]:
    storage = open_storage(url)
    try:
        return set(storage.template_ids())
    finally:
        storage.close()


def test_a_changed_model_is_embedded_in_the_background_and_erasures_stick(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    first = _service(url, FakeEmbedder(seed=0), None)
    for i in range(8):
        first.create_subject(f"p{i}")
        for j in range(5):
            first.enrol(f"p{i}", ENROL[(i + j) % 6])
    first.close()

    embedder = SlowEmbedder(seed=1)  # another model: no cached embedding opens
    service = _service(url, embedder, background_from=10)
    try:
        out = health(service)
        assert not out.index_complete and out.rebuild_total == 40
        assert out.templates_indexed < 40 and out.rebuild_done < 40
        service.delete_subject("p7")  # erased while its templates wait to be embedded
        assert service.rebuild is not None
        service.rebuild.join(timeout=60)
        service.sync()
        out = health(service)
        assert out.index_complete and out.rebuild_done == out.rebuild_total == 40
        assert service.index.template_ids() == _db_ids(url) and len(service.index) == 35
        assert "p7" not in service.index.subject_counts()
        assert service.identify(ENROL[0], top_k=1).candidates[0].score > 0.99
    finally:
        service.close()

    # the rebuild sealed the new model's embeddings: the next start needs no model call
    again = _service(url, FakeEmbedder(seed=1), background_from=10)
    try:
        assert again.rebuild is None and again.index_complete
        assert again.embedder.calls == 0 and len(again.index) == 35  # type: ignore[attr-defined]
    finally:
        again.close()


def test_fewer_missing_than_the_threshold_are_embedded_before_serving(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    first = _service(url, FakeEmbedder(seed=0), None)
    first.create_subject("a")
    for p in ENROL[:3]:
        first.enrol("a", p)
    first.close()
    service = _service(url, FakeEmbedder(seed=2), background_from=10)
    try:
        assert service.rebuild is None and len(service.index) == 3
        assert health(service).index_complete
    finally:
        service.close()


class FailingEmbedder(FakeEmbedder):
    def embed(self, features: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model broke")


def test_a_failed_rebuild_leaves_the_index_marked_incomplete(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    first = _service(url, FakeEmbedder(seed=0), None)
    first.create_subject("a")
    for p in ENROL:
        first.enrol("a", p)
    first.close()
    service = _service(url, FailingEmbedder(seed=3), background_from=2)
    try:
        assert service.rebuild is not None
        service.rebuild.join(timeout=30)
        assert service.rebuild.error == "RuntimeError" and not service.index_complete
        assert not health(service).index_complete and len(service.index) == 0
    finally:
        service.close()
