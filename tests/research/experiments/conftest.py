"""Fixtures of the experiment tests: one tiny setup per module, whose model and privacy
caches the tests of that module share (as experiments share them in real runs)."""

from __future__ import annotations

import pytest
import torch

from tests.research.experiments.toys import tiny_setup


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(1)
    return tiny_setup(tmp_path_factory.mktemp("experiments"))
