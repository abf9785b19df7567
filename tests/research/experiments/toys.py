"""A tiny backbone and tiny data for the experiment tests: every experiment runs end to end
in seconds (a few optimiser steps of a one-layer network, a 20-pair benchmark, a privacy
harness of two attack steps and three victims)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from faceobfuscator.recognition.backbones import list_backbones, register_backbone
from faceobfuscator.recognition.variants import register_weighted_backbone
from faceobfuscator.research.data.formats import write_bin
from faceobfuscator.research.privacy.pack import EvaluationFaces, VictimFaces, write_pack
from faceobfuscator.research.training.data import write_pack as write_train_pack
from tests.helpers import smooth_face_like
from tests.research.privacy.synthetic import synthetic_faces
from tests.research.training.toys import _toy_dataset

TINY = "exp-tiny"


class TinyNet(nn.Module):
    """A strided convolution, global pooling and a linear embedding with the ``features``
    BatchNorm that model directories read the embedding size from."""

    def __init__(self, in_channels: int, embedding_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 8, 8, stride=8)
        self.fc = nn.Linear(8, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3))))


def register_tiny() -> str:
    """Register ``exp-tiny`` and ``weighted-exp-tiny`` once per test session."""
    if TINY not in list_backbones():
        register_backbone(TINY, TinyNet)
    return register_weighted_backbone(TINY)


def _png(face: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format="PNG")
    return buf.getvalue()


def tiny_setup(root: Path) -> dict:
    """Files of a tiny experiment under ``root``; returns the experiment configuration
    fields shared by every test (without ``experiment`` and ``settings``)."""
    register_tiny()
    rng = np.random.default_rng(3)
    aligned, split = _toy_dataset(root, rng)
    write_train_pack(root / "train.npz", aligned_root=aligned, split_path=split)
    recipe = {
        "scheme": "arcface-fd",
        "backbone": TINY,
        "data": {"pack": str(root / "train.npz")},
        "embedding_size": 16,
        "batch_size": 8,
        "epochs": 1,
        "max_steps": 2,
        "head": {"s": 16.0, "m": 0.2},
        "optim": {"name": "adamw", "lr": 0.05, "weight_decay": 0.0},
        "validation": {"min_images": 4, "per_identity": 2, "max_identities": 4},
        "device": "cpu",
    }
    (root / "recipe.json").write_text(json.dumps(recipe))
    faces = smooth_face_like(rng, n=20)  # 10 pairs: one per fold
    write_bin(root / "bench.bin", [_png(f) for f in faces], [i % 2 == 0 for i in range(10)])
    synth = synthetic_faces(14, 112, seed=5)
    victims = VictimFaces("lfw", synth[8:11], synth[11:14], ["a", "b", "c"])
    write_pack(EvaluationFaces(synth[:8], 8, [victims], "digest"), root / "privacy-pack")
    return {
        "recipe": str(root / "recipe.json"),
        "models_dir": str(root / "models"),
        "privacy_dir": str(root / "privacy"),
        "evaluation": {"benchmarks": [f"bin:{root / 'bench.bin'}"], "bf16": False, "flip": False},
        "privacy": {
            "pack": str(root / "privacy-pack"),
            "attacks": ["dn"],
            "variants": ["as-paper", "adaptive"],
            "attack_settings": {"dn": {"steps": 2, "batch_size": 4, "width": 4, "dense_layers": 1}},
            "victim_datasets": ["lfw"],
            "probe_images": 4,
            "grid_victims": 0,
        },
        "device": "cpu",
    }
