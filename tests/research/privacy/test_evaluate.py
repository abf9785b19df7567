"""SRRA: reconstructions replayed through our own client and server model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.modeldir import RecognitionModel, load_model, make_random_model
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.privacy.config import PrivacyConfig
from faceobfuscator.research.privacy.evaluate import VictimSet, srra_accepts, srra_reference_points
from faceobfuscator.research.privacy.report import markdown_table
from faceobfuscator.research.privacy.run import load_srra_model
from tests.research.privacy.synthetic import synthetic_faces

#: the calibrated threshold of models/mobilefacenet-faceobfuscator (FAR 1e-3), rounded
TRAINED_THRESHOLD = 0.38


class _PooledProjection(nn.Module):
    """A stand-in for a trained model that tells faces apart: magnitudes of the recovered
    features pooled over 8x8 blocks, centred, through a fixed random projection (equal
    for every obfuscation of one face, since recovery undoes the scale and the magnitude
    the signs)."""

    def __init__(self, channels: int, dim: int = 64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(channels * 14 * 14, dim, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.avg_pool2d(x.abs(), 8).flatten(1)
        return (p - p.mean(1, keepdim=True)) @ self.proj


def _trained_like(threshold: float = TRAINED_THRESHOLD) -> RecognitionModel:
    scheme = get_scheme("faceobfuscator", ProtocolConfig())
    config = {"threshold": threshold, "backbone": "pooled", "embedding_size": 64}
    return RecognitionModel(
        _PooledProjection(scheme.in_channels), scheme, config, torch.device("cpu")
    )


def _victims() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probe photos, another photo of each (the probe with pixel noise) and random
    images."""
    rng = np.random.default_rng(0)
    probe = synthetic_faces(6, 112, seed=4)
    noise = rng.integers(-8, 9, probe.shape)
    reference = np.clip(probe.astype(int) + noise, 0, 255).astype(np.uint8)
    return probe, reference, rng.integers(0, 256, probe.shape).astype(np.uint8)


def test_srra_accepts_the_victims_face_and_rejects_a_random_one() -> None:
    torch.set_num_threads(1)
    model = _trained_like()
    probe, reference, random = _victims()
    g = torch.Generator().manual_seed(0)
    # a perfect (identity) reconstruction, replayed with a fresh obfuscation, is the victim
    assert srra_accepts(model, probe, reference, generator=g).tolist() == [1.0] * 6
    assert srra_accepts(model, random, reference, generator=g).tolist() == [0.0] * 6
    model.threshold = 1.01  # no cosine reaches it
    assert srra_accepts(model, probe, reference, generator=g).sum() == 0
    model.threshold = None
    with pytest.raises(InputError, match="threshold"):
        srra_accepts(model, probe, reference, generator=g)
    with pytest.raises(InputError, match="pair one to one"):
        srra_accepts(_trained_like(), probe[:2], reference, generator=g)


def test_srra_reference_points() -> None:
    torch.set_num_threads(1)
    probe, reference, random = _victims()
    empty = np.zeros((6, 128))
    victims = VictimSet("lfw", probe, reference, torch.zeros(6, 3, 112, 112), empty, empty, [])
    points = srra_reference_points(
        _trained_like(), victims, random[0], generator=torch.Generator().manual_seed(1)
    )
    assert points["ceiling"]["mean"] == 1.0 and points["ceiling"]["n"] == 6
    assert points["floor"]["mean"] == 0.0  # a noise "average face" is nobody
    assert points["impostor"]["mean"] < 1.0


def test_srra_models_are_resolved_and_checked(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    protocol = ProtocolConfig()
    make_random_model(tmp_path / "fo", scheme="faceobfuscator", threshold=0.3)
    make_random_model(tmp_path / "fd", scheme="arcface-fd", threshold=0.3)
    cfg = PrivacyConfig(
        models_dir=str(tmp_path), srra_models={"faceobfuscator": str(tmp_path / "fo")}
    )
    assert cfg.srra_model_dir("faceobfuscator") == tmp_path / "fo"
    assert cfg.srra_model_dir("arcface-fd") == tmp_path / "arcface-fd"  # the default layout
    # an untrained model identifies nobody: SRRA pending; so is a missing model
    lines: list[str] = []
    assert load_srra_model(cfg, "faceobfuscator", protocol, lines.append) is None
    assert load_srra_model(cfg, "arcface-fd", protocol, lines.append) is None
    assert "random" in lines[0] and "no model" in lines[1]
    # a model of another scheme is a configuration error, not a pending figure
    wrong = dataclasses.replace(cfg, srra_models={"arcface-fd": str(tmp_path / "fo")})
    with pytest.raises(ConfigError, match="trained for scheme 'faceobfuscator'"):
        load_srra_model(wrong, "arcface-fd", protocol)
    with pytest.raises(ConfigError, match="not evaluated"):
        PrivacyConfig(schemes=("faceobfuscator",), srra_models={"arcface-fd": "x"})
    assert load_model(tmp_path / "fo").threshold == 0.3


def test_table_shows_srra_and_its_reference_points() -> None:
    share = {"mean": 0.25, "ci95": [0.15, 0.35], "n": 60}
    zero = {"mean": 0.0, "ci95": [0.0, 0.06], "n": 60}
    metrics = {k: share for k in ("ssim", "psnr", "cos", "match", "srra")}
    base = {k: share for k in ("ceiling_match", "impostor_match", "floor_match")}
    base |= {k: share for k in ("floor_ssim", "floor_psnr", "floor_cos")} | {"victims": 60}
    results = {
        "rows": [
            {
                "scheme": "faceobfuscator",
                "variant": "adaptive",
                "scenario": "C",
                "attack": "dn",
                "dataset": "lfw",
                "srra_pending": False,
                "metrics": metrics,
            },
        ],  # fmt: skip
        "baselines": {"lfw": base},
        "srra_models": {"faceobfuscator": {"directory": "models/m", "threshold": 0.376}},
        "srra_baselines": {
            "faceobfuscator": {"lfw": {"ceiling": share, "impostor": zero, "floor": zero}}
        },
    }
    table = markdown_table(results)
    assert "| faceobfuscator | adaptive | C |" in table
    # the row: PSNR, match, SRRA; dlib points: three shares and PSNR; the SRRA ceiling
    assert table.count("0.25 ±0.10") == 3 + 4 + 1
    assert "SRRA reference points for faceobfuscator (models/m, threshold 0.376)" in table
    assert "(floor) 0.00 ±0.03" in table
