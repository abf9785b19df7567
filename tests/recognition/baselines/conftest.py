"""Fixtures of the baseline-scheme tests."""

from __future__ import annotations

import pytest
import torch

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.schemes import Scheme, get_scheme
from tests.recognition.baselines.tiny import identities

MINE = ("instahide", "cloak", "advface", "ppfr-fd")


@pytest.fixture
def public_faces() -> torch.Tensor:
    """A small public set for InstaHide (synthetic faces of other 'people')."""
    return identities(4, 2, seed=99)[0]


def build(name: str, public: torch.Tensor) -> Scheme:
    scheme = get_scheme(name, ProtocolConfig())
    if hasattr(scheme, "set_public_faces"):
        scheme.set_public_faces(public)
    return scheme
