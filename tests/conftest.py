"""Shared fixtures. Datasets live beside the repository in ../shared/datasets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from faceobfuscator.protocol.sealing import ServerKeyPair
from tests.server.pg import PostgresUnavailable, temporary_postgres

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("FACEOBF_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def datasets_root() -> Path:
    if not (DATASETS / "lfw").is_dir():
        pytest.fail(
            f"datasets not found at {DATASETS}; set FACEOBF_DATASETS or place ../shared/datasets",
            pytrace=False,
        )
    return DATASETS


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of one PostgreSQL server for the whole run (FACEOBF_TEST_PG_URL, or a temporary
    one on loopback); tests that need it fail, never skip, when it cannot start."""
    given = os.environ.get("FACEOBF_TEST_PG_URL")
    if given:
        yield given
        return
    try:
        with temporary_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed by the storage tests and could not start: {exc}")


@pytest.fixture(scope="module")
def server_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[ServerKeyPair, Path]:
    path = tmp_path_factory.mktemp("keys") / "server.key"
    pair = ServerKeyPair.generate()
    pair.save(path)
    return pair, path


@pytest.fixture(scope="session", autouse=True)
def instahide_public_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A few synthetic aligned crops as InstaHide's public set, so that no test depends on
    the FairFace crops in cache/ (tests that want their own set the variable again)."""
    from PIL import Image

    from faceobfuscator.recognition.baselines.instahide import PUBLIC_ENV
    from tests.research.privacy.synthetic import synthetic_faces

    folder = tmp_path_factory.mktemp("instahide-public")
    for i, face in enumerate(synthetic_faces(4, 112, seed=4242)):
        Image.fromarray(face).save(folder / f"{i}.png")
    before = os.environ.get(PUBLIC_ENV)
    os.environ[PUBLIC_ENV] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(PUBLIC_ENV, None)
    else:
        os.environ[PUBLIC_ENV] = before
