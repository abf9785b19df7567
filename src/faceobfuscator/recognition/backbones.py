"""Embedding networks by name: improved ResNets (IR-18, IR-50) and MobileFaceNet, as in
insightface ``arcface_torch``, with the stem taking the scheme's channel count.

Every backbone maps ``(N, C, 112, 112)`` float to ``(N, embedding_size)`` (before L2
normalisation, which belongs to the caller).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import DEFAULT_IMAGE_SIZE
from faceobfuscator.registry import Registry

__all__ = [
    "IResNet",
    "MobileFaceNet",
    "build_backbone",
    "list_backbones",
    "register_backbone",
    "load_pretrained_weights",
    "INPUT_SIZE",
]

#: Face side the backbones expect: four stride-2 stages take 112 to the 7x7 head.
INPUT_SIZE = DEFAULT_IMAGE_SIZE


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.constant_(m.weight, 1.0)
            nn.init.constant_(m.bias, 0.0)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)


class IBasicBlock(nn.Module):
    """BN - conv3x3 - BN - PReLU - conv3x3(stride) - BN, plus the shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """Improved ResNet (ArcFace's IR): a stride-1 3x3 stem, four stages of stride 2
    (112 -> 7), then BN, dropout, a fully connected layer and a BN embedding whose scale is
    fixed at 1."""

    def __init__(
        self,
        layers: tuple[int, int, int, int],
        *,
        in_channels: int = 3,
        embedding_size: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        stages = []
        inplanes = 64
        for planes, units in zip((64, 128, 256, 512), layers, strict=True):
            blocks = [IBasicBlock(inplanes, planes, 2)]
            blocks += [IBasicBlock(planes, planes) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        _init_weights(self)
        self.features.weight.requires_grad = (
            False  # arcface_torch: the embedding BN's scale stays 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int, padding: int, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.PReLU(cout))
    return nn.Sequential(*layers)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to ``hidden``, depthwise 3x3, linear 1x1 project."""

    def __init__(self, cin: int, cout: int, hidden: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            _conv_bn(cin, hidden, 1, 1, 0),
            _conv_bn(hidden, hidden, 3, stride, 1, groups=hidden),
            _conv_bn(hidden, cout, 1, 1, 0, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    """MobileFaceNet (Chen et al. 2018), about 1M parameters: a stride-2 stem, inverted
    bottlenecks down to 7x7, a 1x1 conv to 512 and a global depthwise (GDC) head."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        embedding_size: int = 512,
        blocks: tuple[int, int, int] = (4, 6, 2),
        width: int = 64,
    ) -> None:
        super().__init__()
        w, w2 = width, 2 * width
        layers: list[nn.Module] = [
            _conv_bn(in_channels, w, 3, 2, 1),
            _conv_bn(w, w, 3, 1, 1, groups=w),
            DepthWise(w, w, 2 * w, 2, residual=False),
            *[DepthWise(w, w, 2 * w, 1, residual=True) for _ in range(blocks[0])],
            DepthWise(w, w2, 4 * w, 2, residual=False),
            *[DepthWise(w2, w2, 4 * w, 1, residual=True) for _ in range(blocks[1])],
            DepthWise(w2, w2, 8 * w, 2, residual=False),
            *[DepthWise(w2, w2, 4 * w, 1, residual=True) for _ in range(blocks[2])],
            _conv_bn(w2, 512, 1, 1, 0),
        ]
        self.body = nn.Sequential(*layers)
        self.gdc = _conv_bn(512, 512, 7, 1, 0, groups=512, act=False)
        self.linear = nn.Linear(512, embedding_size, bias=False)
        self.features = nn.BatchNorm1d(embedding_size)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.gdc(self.body(x)), 1)
        return self.features(self.linear(x))


BackboneFactory = Callable[[int, int], nn.Module]
#: ``loader(network) -> names of the state-dict tensors it filled``
PretrainedLoader = Callable[[nn.Module], set[str]]
_REGISTRY: Registry[BackboneFactory] = Registry("backbone")
_PRETRAINED: dict[str, PretrainedLoader] = {}


def register_backbone(
    name: str, factory: BackboneFactory, *, pretrained: PretrainedLoader | None = None
) -> None:
    """Register ``factory(in_channels, embedding_size) -> nn.Module``; a taken name raises.
    ``pretrained`` loads published weights into a built network (see
    :func:`load_pretrained_weights`)."""
    _REGISTRY.add(name, factory)
    if pretrained is not None:
        _PRETRAINED[name] = pretrained


def load_pretrained_weights(name: str, network: nn.Module) -> set[str]:
    """Load backbone ``name``'s pretrained weights into ``network`` (built by
    :func:`build_backbone`) and return the names of the state-dict tensors loaded (layers
    whose shape depends on the scheme, such as a stem for other channels, stay fresh).

    Raises:
        ConfigError: ``name`` has no pretrained weights (the message lists those that do).
    """
    if name not in _PRETRAINED:
        raise ConfigError(
            f"backbone {name!r} has no pretrained weights; backbones with pretrained "
            f"weights: {sorted(_PRETRAINED)}"
        )
    return _PRETRAINED[name](network)


def list_backbones() -> list[str]:
    """Registered backbone names, sorted."""
    return _REGISTRY.names()


def build_backbone(name: str, in_channels: int, embedding_size: int = 512) -> nn.Module:
    """A freshly initialised backbone; an unknown name lists the known ones."""
    factory = _REGISTRY.get(name)
    if in_channels < 1 or embedding_size < 1:
        raise ConfigError(
            f"in_channels={in_channels} and embedding_size={embedding_size} must be >= 1"
        )
    return factory(in_channels, embedding_size)


def _sface(in_channels: int, embedding_size: int) -> nn.Module:
    from faceobfuscator.recognition.sface import SFaceNet

    return SFaceNet(in_channels, embedding_size)


def _sface_pretrained(network: nn.Module) -> set[str]:
    from faceobfuscator.recognition.sface import SFaceNet, load_pretrained

    if not isinstance(network, SFaceNet):
        raise ConfigError(f"expected an SFaceNet, got {type(network).__name__}")
    return load_pretrained(network)


register_backbone("iresnet18", lambda c, e: IResNet((2, 2, 2, 2), in_channels=c, embedding_size=e))
register_backbone("iresnet50", lambda c, e: IResNet((3, 4, 14, 3), in_channels=c, embedding_size=e))
register_backbone("mobilefacenet", lambda c, e: MobileFaceNet(in_channels=c, embedding_size=e))
register_backbone("sface", _sface, pretrained=_sface_pretrained)
