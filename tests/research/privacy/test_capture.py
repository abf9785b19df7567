"""The replay measurement against a plain and a sealed deployment (TestClient, fast
stand-in embedder): plain accepts every replay, sealed none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.payload import decode_payload
from faceobfuscator.research.privacy.capture import (
    Capture,
    ChannelTap,
    reobfuscate,
    replay_acceptance,
)
from faceobfuscator.server.storage import open_storage
from tests.server.fakes import FakeEmbedder
from tests.server.security.api import ADMIN, ENROL, KEYS, OCTET, OLD, client, sealed_call, settings

CONFIG = FakeEmbedder().protocol


def _leaks(c: TestClient, db: Path, *, sealed: bool) -> tuple[list[Capture], list[Capture]]:
    """Enrol three victims while tapping the channel; return the channel and database
    captures."""
    tap = ChannelTap()
    c.event_hooks = {"request": [tap], "response": []}
    for i in range(3):
        c.post("/v1/subjects", json={"subject": f"v{i}"}, headers=ADMIN)
        if sealed:
            r, _, _ = sealed_call(c, f"/v1/subjects/v{i}/templates", "enroll", f"v{i}", ENROL[i],
                                  ADMIN)  # fmt: skip
        else:
            r = c.post(f"/v1/subjects/v{i}/templates", content=ENROL[i], headers=ADMIN | OCTET)
        assert r.status_code == 201
    c.event_hooks = {"request": [], "response": []}
    storage = open_storage(f"sqlite:///{db}")
    refs = storage.refs(storage.template_ids())
    rows = storage.payloads([r.template_id for r in refs])
    storage.close()
    return tap.captures, [Capture(r.name, rows[r.template_id]) for r in refs]


def test_reobfuscated_payload_is_new_bytes_of_the_same_face() -> None:
    fresh = reobfuscate(ENROL[0], CONFIG, generator=torch.Generator().manual_seed(0))
    assert fresh != ENROL[0]
    a, b = (decode_payload(p, CONFIG).feature for p in (ENROL[0], fresh))
    emb = FakeEmbedder().embed(np.stack([a, b]))
    assert float(emb[0] @ emb[1]) > 0.999  # recovery and magnitude undo signs and scale


def test_plain_deployment_accepts_every_replay(tmp_path: Path) -> None:
    with client(settings(tmp_path)) as c:
        channel, database = _leaks(c, tmp_path / "g.db", sealed=False)
        g = torch.Generator().manual_seed(1)
        for scenario, caps in (("C", channel), ("D", database)):
            result = replay_acceptance(c, KEYS["client"], caps, scenario=scenario, generator=g)
            assert (result.deployment, result.attempts) == ("plain", 3)
            assert result.acceptance_rate == 1.0, result.outcomes


def test_sealed_deployment_accepts_none(tmp_path: Path, server_key) -> None:
    s = settings(tmp_path, sealing_key_file=server_key[1], require_sealed=True,
                 master_key=OLD.to_base64())  # fmt: skip
    with client(s) as c:
        channel, database = _leaks(c, tmp_path / "g.db", sealed=True)
        assert all(cap.challenge for cap in channel)
        for scenario, caps in (("C", channel), ("D", database)):
            result = replay_acceptance(c, KEYS["client"], caps, scenario=scenario)
            assert (result.deployment, result.attempts) == ("sealed", 3)
            assert result.acceptance_rate == 0.0, result.outcomes
            assert all(o.startswith("refused 415") for o in result.outcomes)  # plain refused


def test_scenario_is_checked(tmp_path: Path) -> None:
    with client(settings(tmp_path)) as c, pytest.raises(InputError, match="scenario"):
        replay_acceptance(c, KEYS["client"], [], scenario="B")
