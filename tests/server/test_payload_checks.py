"""Payloads no genuine client makes (issue 10, item 1): refused with PayloadError (422)
before anything is stored; whatever is stored has a finite embedding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from faceobfuscator import ProtocolConfig, encode_payload
from faceobfuscator.errors import PayloadError
from faceobfuscator.protocol.obfuscation import check_sent_feature
from faceobfuscator.protocol.payload import decode_payload
from faceobfuscator.server.service import GalleryService
from faceobfuscator.server.storage import open_storage
from tests.server.fakes import FakeEmbedder, faces, payloads

CONFIG = ProtocolConfig()
SHAPE = CONFIG.feature_shape


def _payload(feature: np.ndarray) -> bytes:
    return encode_payload(feature.astype(np.float32), CONFIG)


POISON = {
    "subnormal": np.full(SHAPE, 1e-40, np.float32),
    "all zero": np.zeros(SHAPE, np.float32),
    "constant": np.full(SHAPE, 0.25, np.float32),
    "one channel zero": np.concatenate(
        [np.random.default_rng(0).standard_normal((1, *SHAPE[1:])), np.zeros((1, *SHAPE[1:]))]
    ),
    "random signs of one value": np.where(
        np.random.default_rng(1).random(SHAPE) < 0.5, 1.0, -1.0
    ).astype(np.float32),
}


@pytest.fixture
def service(tmp_path):
    service = GalleryService(open_storage(f"sqlite:///{tmp_path / 'g.db'}"), FakeEmbedder())
    service.start()
    service.create_subject("alice")
    service.enrol("alice", payloads(faces(1), seed=1)[0])
    yield service
    service.close()


def _state(service: GalleryService) -> tuple:
    return service.storage.count(), len(service.index)


@pytest.mark.parametrize("kind", sorted(POISON))
def test_poisoned_payloads_are_refused_and_leave_the_gallery_unchanged(service, kind):
    before = _state(service)
    with pytest.raises(PayloadError, match="Protect the photo again|protect the photo again"):
        service.enrol("alice", _payload(POISON[kind]))
    assert _state(service) == before
    verdict = service.verify("alice", payloads(faces(1), seed=2)[0])
    assert verdict.match and np.isfinite(verdict.score)


def test_genuine_payloads_pass_the_check():
    for data in payloads(faces(6), seed=3):
        recovered = check_sent_feature(decode_payload(data, CONFIG).feature, CONFIG)
        assert np.isfinite(recovered).all()


finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=hnp.arrays(np.float32, (2, 8, 8), elements=finite32),
    scale=st.sampled_from([1e-42, 1e-38, 1e-20, 1.0, 1e20, 3e38]),
)
def test_stored_implies_finite_embedding(service, values, scale):
    """The whole space of decodable payloads: small tiles of arbitrary float32 values,
    repeated over the feature and scaled, are either refused or stored with a finite
    embedding, and a refusal stores nothing."""
    with np.errstate(over="ignore"):
        feature = np.tile(values, (1, SHAPE[1] // 8, SHAPE[2] // 8)) * np.float32(scale)
        feature = np.nan_to_num(feature.astype(np.float32), posinf=3e38, neginf=-3e38)
    before = _state(service)
    try:
        service.enrol("alice", _payload(feature))
    except PayloadError:
        assert _state(service) == before
        return
    # stored: every template of alice (this one included) scores finite against a genuine probe
    probe = payloads(faces(1), seed=2)[0]
    result = service.identify(probe, top_k=50)
    assert result.candidates and all(np.isfinite(c.score) for c in result.candidates)
    assert np.isfinite(service.verify("alice", probe).score)
