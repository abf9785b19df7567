"""Fixtures of the privacy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.research.privacy.synthetic import DATASETS
from tests.server.security.conftest import db, db_url  # noqa: F401


@pytest.fixture
def datasets_root() -> Path:
    """The shared datasets folder; tests that need it skip, saying so, where it is absent."""
    if not (DATASETS / "lfw").is_dir():
        pytest.skip(f"needs the LFW images at {DATASETS} (shared datasets folder not present)")
    return DATASETS
