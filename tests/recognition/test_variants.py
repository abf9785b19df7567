"""The experiment variants: the schemes taken apart, and the auxiliary network's channel
weights (start at 1, receive gradients, multiply their channel, survive a model
directory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceobfuscator import ProtocolConfig
from faceobfuscator.errors import InputError
from faceobfuscator.protocol.frequency import fast_transform, to_greyscale
from faceobfuscator.recognition.backbones import build_backbone, load_pretrained_weights
from faceobfuscator.recognition.modeldir import load_model, save_model
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.recognition.variants import WEIGHTS_KEY, channel_weights
from tests.helpers import smooth_face_like


@pytest.fixture
def faces(rng) -> torch.Tensor:
    return torch.from_numpy(smooth_face_like(rng, n=3))


def test_dct_raw_is_the_unnormalised_transform(faces) -> None:
    p = ProtocolConfig(channels=(0, 9, 63))
    sent = get_scheme("dct-raw", p).client_features(faces, generator=torch.Generator())
    torch.testing.assert_close(sent, fast_transform(to_greyscale(faces, p), p))
    assert sent[:, 0].abs().mean() > 10 * sent[:, 1].abs().mean()  # DC dominates unnormalised


def test_dct_normalised_is_arcface_fd_on_the_retained_channels(faces) -> None:
    p = ProtocolConfig(channels=(8, 1, 20))
    s = get_scheme("dct-normalised", p)
    full = get_scheme("arcface-fd", p).encode(faces)
    torch.testing.assert_close(s.encode(faces), full[:, [8, 1, 20]])
    assert s.in_channels == 3 and not s.has_recovery
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(s.client_features(faces, generator=g), s.encode(faces))


def test_no_recovery_sends_the_same_and_feeds_it_unrecovered(faces) -> None:
    p = ProtocolConfig()
    fo, nr = get_scheme("faceobfuscator", p), get_scheme("faceobfuscator-no-recovery", p)
    a = fo.client_features(faces, generator=torch.Generator().manual_seed(1))
    b = nr.client_features(faces, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert nr.server_input(b) is b and not nr.has_recovery and fo.has_recovery
    assert b.abs().max() > 1e3  # obfuscated scales reach the network


def test_channel_weights_start_at_one_and_receive_gradients() -> None:
    torch.manual_seed(0)
    net = build_backbone("weighted-mobilefacenet", 5, 32)
    w = getattr(net, WEIGHTS_KEY)
    assert w.shape == (5,) and torch.equal(w.detach(), torch.ones(5))
    x = torch.randn(4, 5, 112, 112)
    net(x).pow(2).sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and (w.grad != 0).all()


def test_a_zero_weight_removes_its_channel() -> None:
    torch.manual_seed(0)
    net = build_backbone("weighted-mobilefacenet", 3, 32).eval()
    with torch.no_grad():
        getattr(net, WEIGHTS_KEY)[1] = 0.0
        x = torch.randn(2, 3, 112, 112)
        y = x.clone()
        y[:, 1] = torch.randn(2, 112, 112)
        torch.testing.assert_close(net(x), net(y))
        getattr(net, WEIGHTS_KEY)[1] = 1.0
        assert not torch.allclose(net(x), net(y))


def test_weighted_model_directory_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    p = ProtocolConfig(channels=(0, 1, 8))
    net = build_backbone("weighted-mobilefacenet", 3, 32)
    with torch.no_grad():
        getattr(net, WEIGHTS_KEY).copy_(torch.tensor([0.5, 2.0, 1.5]))
    save_model(
        tmp_path / "m",
        backbone_name="weighted-mobilefacenet",
        backbone=net,
        scheme_name="dct-raw",
        protocol=p,
        threshold=0.3,
    )
    model = load_model(tmp_path / "m")
    np.testing.assert_array_equal(channel_weights(model.network).numpy(), [0.5, 2.0, 1.5])
    with pytest.raises(InputError, match="no channel_weights"):
        channel_weights(build_backbone("mobilefacenet", 3, 32))


def test_pretrained_weights_leave_the_channel_weights_fresh() -> None:
    net = build_backbone("weighted-sface", 4, 128)
    loaded = load_pretrained_weights("weighted-sface", net)
    assert WEIGHTS_KEY not in loaded and "stem.0.weight" not in loaded and len(loaded) > 100
    assert torch.equal(getattr(net, WEIGHTS_KEY).detach(), torch.ones(4))
