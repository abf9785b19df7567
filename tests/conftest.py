"""Shared fixtures. Datasets live beside the repository in ../shared/datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

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
