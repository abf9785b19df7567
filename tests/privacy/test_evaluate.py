"""SRRA: reconstructions replayed through our own client and server model."""

from __future__ import annotations

from pathlib import Path

import torch

from faceobfuscator.modeldir import load_model, make_random_model
from faceobfuscator.privacy.evaluate import srra_accepts
from faceobfuscator.privacy.run import _load_srra_model

from .synthetic import synthetic_faces


def test_srra_accepts_a_replayed_copy_and_skips_random_models(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    make_random_model(tmp_path / "faceobfuscator", scheme="faceobfuscator", threshold=0.3)
    model = load_model(tmp_path / "faceobfuscator")
    faces = synthetic_faces(3, 112, seed=4)
    g = torch.Generator().manual_seed(0)
    # the same photo replayed is the same person for any model: cosine 1 >= threshold
    same = srra_accepts(model, model.scheme, faces, faces, generator=g)
    assert same.tolist() == [1.0, 1.0, 1.0]
    model.threshold = 1.01  # nothing reaches a cosine above 1
    assert srra_accepts(model, model.scheme, faces, faces, generator=g).sum() == 0
    # an untrained model identifies nobody, so the harness reports SRRA as pending
    assert _load_srra_model(tmp_path, "faceobfuscator", lambda s: None) is None
    assert _load_srra_model(tmp_path, "arcface-fd", lambda s: None) is None
