"""Reconstruction networks. Every network maps a feature map ``(N, C, S, S)`` with any
channel count ``C`` to an RGB image ``(N, 3, S, S)`` in [0, 1]; ``S`` must be a multiple of
16 (112 for the ArcFace crop).

- :class:`NbNetReconstructor`: the DN-based attack. A strided-convolution encoder followed
  by an NbNet-style decoder (Mai et al., TPAMI 2018): each stage is a 4x4 stride-2
  deconvolution followed by a dense block whose layers see every earlier output of the
  stage; no skip connections, so everything passes the ``S/16`` bottleneck.
- :class:`UNetGenerator` and :class:`PatchDiscriminator`: pix2pix (Isola et al., CVPR 2017)
  with a U-Net generator and a 70x70 PatchGAN (C64-C128-C256-C512, 4x4 kernels).

``width`` scales every layer (64 is the papers' size; 16 or 32 fit a CPU budget).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DenseBlock", "NbNetReconstructor", "UNetGenerator", "PatchDiscriminator"]


class DenseBlock(nn.Module):
    """``layers`` BN-ReLU-Conv3x3 layers of ``growth`` channels, each fed the concatenation
    of the block's input and every earlier layer's output; a 1x1 convolution maps the
    concatenation to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, *, layers: int, growth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList()
        ch = in_channels
        for _ in range(layers):
            self.layers.append(
                nn.Sequential(
                    nn.BatchNorm2d(ch),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(ch, growth, 3, padding=1, bias=False),
                )
            )
            ch += growth
        self.transition = nn.Sequential(
            nn.BatchNorm2d(ch), nn.ReLU(inplace=True), nn.Conv2d(ch, out_channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, dim=1)))
        return self.transition(torch.cat(feats, dim=1))


def _down(cin: int, cout: int, *, norm: bool = True) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=not norm)]
    if norm:
        mods.append(nn.BatchNorm2d(cout))
    mods.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*mods)


class NbNetReconstructor(nn.Module):
    """Encoder (four 4x4 stride-2 convolutions, ``S -> S/16``) and NbNet decoder (three
    stages of 4x4 stride-2 deconvolution + dense block, ``S/16 -> S/2``, then a last 4x4
    stride-2 deconvolution to RGB), sigmoid output.

    Shapes: ``(N, in_channels, S, S) -> (N, 3, S, S)``.
    """

    def __init__(
        self, in_channels: int, *, width: int = 32, dense_layers: int = 3, growth: int | None = None
    ) -> None:
        super().__init__()
        w = width
        g = growth or max(w // 2, 4)
        self.encoder = nn.Sequential(
            _down(in_channels, w, norm=False),
            _down(w, 2 * w),
            _down(2 * w, 4 * w),
            _down(4 * w, 8 * w),
        )
        stages: list[nn.Module] = []
        chans = [8 * w, 4 * w, 2 * w, w]
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            stages.append(
                nn.Sequential(
                    nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(cout),
                    nn.ReLU(inplace=True),
                    DenseBlock(cout, cout, layers=dense_layers, growth=g),
                )
            )
        self.decoder = nn.Sequential(*stages)
        # the last stage, S/2 -> S, is a plain deconvolution: a dense block at full
        # resolution would cost more than the rest of the network together on a CPU
        self.head = nn.Sequential(
            nn.ReLU(inplace=False), nn.ConvTranspose2d(w, 3, 4, stride=2, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.decoder(self.encoder(x))))


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, *, dropout: bool) -> None:
        super().__init__()
        mods: list[nn.Module] = [
            nn.ReLU(inplace=False),
            nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if dropout:
            mods.append(nn.Dropout(0.5))
        self.body = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UNetGenerator(nn.Module):
    """pix2pix U-Net: encoder C(w)-C(2w)-C(4w)-C(8w) (4x4 stride 2, LeakyReLU 0.2, BN but
    not on the first), a 3x3 bottleneck at ``S/16``, and a mirrored decoder with skip
    connections and dropout 0.5 on its first stage; output ``(tanh + 1) / 2`` in [0, 1].

    Shapes: ``(N, in_channels, S, S) -> (N, 3, S, S)``.
    """

    def __init__(self, in_channels: int, *, width: int = 64) -> None:
        super().__init__()
        w = width
        self.downs = nn.ModuleList(
            [
                _down(in_channels, w, norm=False),
                _down(w, 2 * w),
                _down(2 * w, 4 * w),
                _down(4 * w, 8 * w),
            ]
        )
        self.bottleneck = nn.Sequential(
            nn.Conv2d(8 * w, 8 * w, 3, padding=1, bias=False),
            nn.BatchNorm2d(8 * w),
            nn.ReLU(inplace=True),
        )
        self.ups = nn.ModuleList(
            [
                _Up(16 * w, 4 * w, dropout=True),
                _Up(8 * w, 2 * w, dropout=False),
                _Up(4 * w, w, dropout=False),
            ]
        )
        self.out = nn.Sequential(
            nn.ReLU(inplace=False), nn.ConvTranspose2d(2 * w, 3, 4, stride=2, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for down in self.downs:
            h = down(h)
            skips.append(h)
        h = torch.cat([self.bottleneck(h), skips[-1]], dim=1)
        for up, skip in zip(self.ups, reversed(skips[:-1]), strict=True):
            h = torch.cat([up(h), skip], dim=1)
        return (torch.tanh(self.out(h)) + 1.0) / 2.0


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: C(w)-C(2w)-C(4w) stride 2, C(8w) stride 1, then a 1-channel 4x4
    convolution; logits ``(N, 1, S/8 - 2, S/8 - 2)`` (12x12 for S = 112), each judging a
    70x70 patch of the concatenated condition and image.

    Shapes: ``(N, cond_channels, S, S), (N, 3, S, S) -> (N, 1, h, w)``.
    """

    def __init__(self, cond_channels: int, *, width: int = 64) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            _down(cond_channels + 3, w, norm=False),
            _down(w, 2 * w),
            _down(2 * w, 4 * w),
            nn.Conv2d(4 * w, 8 * w, 4, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(8 * w),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8 * w, 1, 4, stride=1, padding=1),
        )

    def forward(self, cond: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        # the image enters in [-1, 1], as the generator's tanh output does in pix2pix
        return self.body(torch.cat([cond, image * 2.0 - 1.0], dim=1))
