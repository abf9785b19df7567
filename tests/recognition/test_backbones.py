import pytest
import torch

from faceobfuscator import ConfigError
from faceobfuscator.recognition.backbones import build_backbone, list_backbones, register_backbone

CHANNELS = (2, 3, 64)  # faceobfuscator, arcface, arcface-fd


def test_registry():
    base = ["iresnet18", "iresnet50", "mobilefacenet", "sface"]
    # each base also as the channel-importance network (issue 13): weights per channel first
    assert list_backbones() == base + [f"weighted-{b}" for b in base]
    with pytest.raises(ConfigError, match="known: \\['iresnet18', 'iresnet50'"):
        build_backbone("resnet9000", 3)
    with pytest.raises(ConfigError, match="already registered"):
        register_backbone("mobilefacenet", lambda c, e: torch.nn.Identity())


@pytest.mark.parametrize("name", list_backbones())
@pytest.mark.parametrize("channels", CHANNELS)
def test_output_shape(name, channels):
    torch.manual_seed(0)
    net = build_backbone(name, channels, embedding_size=128).eval()
    with torch.no_grad():
        out = net(torch.randn(2, channels, 112, 112))
    assert out.shape == (2, 128) and torch.isfinite(out).all()


def test_iresnet50_structure():
    net = build_backbone("iresnet50", 2)
    units = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    assert units == [3, 4, 14, 3]
    assert net.conv1.in_channels == 2 and net.conv1.stride == (1, 1)
    assert net.conv1.kernel_size == (3, 3)
    assert net.features.num_features == 512
    n_params = sum(p.numel() for p in net.parameters())
    assert 43e6 < n_params < 44e6  # arcface_torch r50: 43.6M


def test_mobilefacenet_is_small():
    n_params = sum(p.numel() for p in build_backbone("mobilefacenet", 3).parameters())
    assert 0.9e6 < n_params < 1.3e6
