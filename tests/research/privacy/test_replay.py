"""The replay measurement through the API on a tiny random-model setup: a plain deployment
accepts every replay, a sealed one none, while the victims themselves stay accepted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.research.privacy.pack import VictimFaces
from faceobfuscator.research.privacy.replay import LEAKS, measure_replay
from tests.research.privacy.synthetic import synthetic_faces


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("replay")
    # threshold -1: every cosine passes, so acceptance depends on the deployment alone
    model = make_random_model(tmp / "model", scheme="faceobfuscator", threshold=-1.0)
    faces = synthetic_faces(3, 112, seed=5)
    victims = VictimFaces("lfw", faces, faces, ["a", "b", "c"])
    return measure_replay(
        model, victims, folder=tmp / "run", generator=torch.Generator().manual_seed(0)
    )


def _by(rows: list[dict], deployment: str) -> dict[str, dict]:
    return {r["leak"]: r for r in rows if r["deployment"] == deployment}


def test_plain_deployment_accepts_every_replay(rows: list[dict]) -> None:
    plain = _by(rows, "plain")
    assert set(plain) == {"none: the victims verify themselves", *LEAKS}
    for leak, r in plain.items():
        assert r["attempts"] == 3
        assert r["acceptance"]["mean"] == 1.0, (leak, r["outcomes"])
    assert plain["stored template"]["scenario"] == "D"


def test_sealed_deployment_accepts_no_replay(rows: list[dict]) -> None:
    sealed = _by(rows, "sealed")
    assert sealed["none: the victims verify themselves"]["acceptance"]["mean"] == 1.0
    for leak in LEAKS:
        r = sealed[leak]
        assert (r["attempts"], r["acceptance"]["mean"]) == (3, 0.0), r["outcomes"]
        assert r["acceptance"]["ci95"][1] < 0.6  # Wilson upper bound for 0 of 3
        assert "accepted" not in r["outcomes"]
        # every attempt ended with the plain payload refused: sealing is required
        assert all(o.startswith("refused 415") for o in r["outcomes"])


def test_unknown_deployment(tmp_path: Path) -> None:
    faces = synthetic_faces(1, 112)
    with pytest.raises(ConfigError, match="unknown deployment"):
        measure_replay(
            tmp_path, VictimFaces("lfw", faces, faces, ["a"]), folder=tmp_path,
            generator=torch.Generator(), deployments=("open",),
        )  # fmt: skip
