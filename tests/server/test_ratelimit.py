"""Per-key rate limits: the token bucket, and 429 with Retry-After through the API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from faceobfuscator.server import ServerSettings, create_app
from faceobfuscator.server.ratelimit import RateLimiter
from tests.server.fakes import FakeEmbedder
from tests.server.test_service import PROBE

OCTET = {"Content-Type": "application/octet-stream"}


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_admits_a_burst_then_the_rate_and_keys_are_apart():
    clock = _Clock()
    limiter = RateLimiter(2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token at 2/s
    assert limiter.take("b") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert limiter.take("a") == 0.0 and limiter.take("a") == pytest.approx(0.5)
    clock.now += 60  # refills to the burst, not beyond
    assert [limiter.take("a") for _ in range(4)][-1] == pytest.approx(0.5)


def test_refused_requests_spend_nothing():
    clock = _Clock()
    limiter = RateLimiter(1.0, burst=1, clock=clock)
    limiter.take("a")
    for _ in range(5):
        assert limiter.take("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert limiter.take("a") == 0.0


def test_bad_limits_are_refused():
    with pytest.raises(ValueError, match="rate must be > 0"):
        RateLimiter(0, burst=1)


def test_api_answers_429_with_retry_after_and_recovers(tmp_path, keys, key_hashes, monkeypatch):
    from faceobfuscator.server import app as app_module

    clock = _Clock()  # real time would refill the bucket on a slow machine
    monkeypatch.setattr(
        app_module,
        "RateLimiter",
        lambda rate, *, burst: RateLimiter(rate, burst=burst, clock=clock),
    )
    settings = ServerSettings(
        model_dir=tmp_path,
        db_url=f"sqlite:///{tmp_path / 'g.db'}",
        client_rate_per_s=5.0,
        rate_burst=2,
        **key_hashes,
    )
    user = {"Authorization": f"Bearer {keys['client']}"} | OCTET
    admin = {"Authorization": f"Bearer {keys['admin']}"} | OCTET
    with TestClient(create_app(settings, embedder=FakeEmbedder())) as c:
        codes = [c.post("/v1/identify", content=PROBE[0], headers=user).status_code]
        codes += [c.post("/v1/identify", content=PROBE[0], headers=user).status_code]
        refused = c.post("/v1/identify", content=PROBE[0], headers=user)
        assert codes == [200, 200] and refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "5 requests per second" in refused.json()["detail"]
        # administrators have no limit here, and a refused client is not counted
        assert all(
            c.post("/v1/identify", content=PROBE[0], headers=admin).status_code == 200
            for _ in range(4)
        )
        clock.now += 0.25  # one token back at 5/s
        assert c.post("/v1/identify", content=PROBE[0], headers=user).status_code == 200
        assert c.post("/v1/identify", content=PROBE[0], headers=user).status_code == 429
