"""Reconstruction attacks on what a sealed deployment leaks: the leaks look like random
bytes, and an attack trained on them ignores its input (it can only learn a constant)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.sealing import SEAL_OVERHEAD, ServerKeyPair
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.privacy.attacks import AttackSettings
from faceobfuscator.research.privacy.identity import DlibRecognizer
from faceobfuscator.research.privacy.pack import VictimFaces
from faceobfuscator.research.privacy.sealed import (
    attack_sealed,
    blob_maps,
    byte_statistics,
    sealed_leak,
)
from faceobfuscator.server.security.envelope import MasterKey
from tests.research.privacy.synthetic import synthetic_faces
from tests.research.privacy.test_evaluate import _trained_like

SCHEME = get_scheme("faceobfuscator", ProtocolConfig())


def test_blob_maps_lay_bytes_out_as_channels() -> None:
    maps = blob_maps([bytes([0, 255, 51]) * 3, bytes(9)], 2)
    assert maps.shape == (2, 3, 2, 2)  # 9 bytes in 2x2 channels: 3, the last padded
    flat = maps.reshape(2, -1)
    np.testing.assert_allclose(flat[0, :3], [-1.0, 1.0, 51 / 127.5 - 1], atol=1e-6)
    assert flat[0, 9:].abs().sum() == 0 and (flat[1, :9] == -1).all()
    with pytest.raises(InputError, match="one length"):
        blob_maps([b"ab", b"abc"], 2)


@pytest.mark.parametrize("scenario", ["C", "D"])
def test_sealed_leaks_look_random(scenario: str) -> None:
    torch.set_num_threads(1)
    leak, blobs = sealed_leak(
        scenario, SCHEME, public_key=ServerKeyPair.generate().public_key,
        master=MasterKey.generate(),
    )  # fmt: skip
    faces = torch.from_numpy(synthetic_faces(4, 112, seed=2))
    g = torch.Generator().manual_seed(0)
    first = blobs(faces, g)
    again = blobs(faces, torch.Generator().manual_seed(0))  # the same features, re-encrypted
    payload_bytes = 2 * 112 * 112 * 4
    assert all(len(b) > payload_bytes for b in first)
    if scenario == "C":
        assert len(first[0]) == len(first[1]) and len(first[0]) - SEAL_OVERHEAD > payload_bytes
    stats = byte_statistics(first, again)
    assert stats["constant_bytes"] == {"C": 19, "D": 13}[scenario]  # format headers only
    assert abs(stats["byte_mean"] - 127.5) < 1.0 and abs(stats["byte_std"] - 73.9) < 1.0
    assert abs(stats["equal_bytes_between_two_encryptions"] - 1 / 256) < 0.0005
    x = leak(faces, g)
    assert x.shape == (4, 9, 112, 112) and x.dtype == torch.float32


def test_an_attack_on_ciphertexts_ignores_its_input() -> None:
    torch.set_num_threads(1)
    faces = synthetic_faces(40, 112, seed=3)
    victims = VictimFaces("lfw", faces[32:36], faces[36:40], list("abcd"))
    model = _trained_like()
    result, recon = attack_sealed(
        "C", SCHEME, faces[:32], victims, attack="dn",
        settings=AttackSettings(steps=40, batch_size=8, width=4, dense_layers=1),
        recognizer=DlibRecognizer(model.protocol), model=model, seed=0, log=lambda s: None,
    )  # fmt: skip
    assert recon.shape == (4, 112, 112, 3) and recon.dtype == np.uint8
    assert result["training"]["steps"] == 40 and result["input_channels"] == 9
    out = result["output"]
    # one face for every victim: the spread across victims is a small part of the originals'
    assert out["spread_across_victims"] < 0.1 * out["originals_spread"]
    assert result["metrics"]["match"]["n"] == 4 and "srra" in result["metrics"]
    assert set(result["srra_baselines"]) == {"ceiling", "impostor", "floor"}
