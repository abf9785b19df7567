"""MinusFace (Mi et al., "Privacy-Preserving Face Recognition Using Trainable Feature
Subtraction", CVPR 2024; code: Tencent/TFace ``recognition/tasks/minusface``).

A generator learns to regenerate the face from its colour DCT channels; the client sends
the residue (original minus regeneration) with its channels shuffled at random per face and
decoded back to a three-channel image (the paper's X_p). The server network recognises
faces from such shuffled residues.

Assumptions, each against the paper's method section and the authors' code
(``minusface.py``; section numbers are not cited: the code was read, the paper was not at
hand):

- Encoder: :func:`~faceobfuscator.recognition.colour_dct.colour_channels` (all 64
  frequencies of Y, Cb, Cr, 192 channels, in the authors' units); decoder: the
  least-squares inverse :meth:`~faceobfuscator.recognition.colour_dct.ColourDCT.inverse`, with 8x upsampling as the authors but the protocol's bilinear convention
  (TFace: ``align_corners=True``). TFace decodes by block IDCT and a 1/8 bilinear
  downsampling; the least-squares inverse is the exact inverse of the encoder instead.
  Decoded YCbCr goes to RGB, is clipped to [0, 255] (as TFace) and mapped to
  ``protocol.pixel_range``.
- Generator: TFace uses a 5-level U-Net (64 to 1024 channels) on the 192 channels. For a
  CPU budget it is a 2-level U-Net (:class:`SmallUNet`, 16 and 32 channels, 1x1 convs in and
  out of the 192 channels), on the channels divided by 128.
- Training: TFace trains in two stages (generator and recogniser on the unshuffled residue
  with loss ``5 * L1(x, decode(G(x))) + recognition``, then the recogniser alone on shuffled
  residues with the generator frozen). Here one stage: generator and server network train
  together on shuffled residues, and :meth:`training_loss` adds the same ``5 * L1`` term
  (images in [-1, 1]).
- Shuffling: one uniformly random permutation of all 192 channels per face (TFace
  ``shuffle``: ``torch.randperm(c)`` per sample), from the caller's generator; one shuffled
  copy is sent (TFace ``n_duplicate = 1``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.colour_dct import ColourDCT, colour_channels, rgb_from_ycbcr
from faceobfuscator.recognition.schemes import Scheme, register_scheme

__all__ = ["MinusFaceScheme", "SmallUNet", "GENERATION_WEIGHT", "per_face_permutations"]

#: weight of the generator's L1 regeneration loss (TFace ``MinusLoss``)
GENERATION_WEIGHT = 5.0
_UNIT = 128.0  # coefficients in 8-bit levels -> about unit scale for the generator


def per_face_permutations(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """``(n, k)`` long: an independent uniformly random permutation of ``range(k)`` per row,
    drawn from ``generator`` (on its device)."""
    keys = torch.rand((n, k), generator=generator, device=generator.device)
    return keys.argsort(dim=1)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, 1), nn.ReLU()
    )


class SmallUNet(nn.Module):
    """A 2-level U-Net ``(N, C, S, S)`` -> ``(N, C, S, S)`` (``S`` even)."""

    def __init__(self, channels: int, width: int = 16) -> None:
        super().__init__()
        self.inp = nn.Conv2d(channels, width, 1)
        self.down = _block(width, width)
        self.bottom = _block(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.merge = _block(2 * width, width)
        self.out = nn.Conv2d(width, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down(self.inp(x))
        b = self.bottom(F.max_pool2d(a, 2))
        return self.out(self.merge(torch.cat([a, self.up(b)], dim=1)))


class _Parts(nn.Module):
    def __init__(self, protocol: ProtocolConfig, channels: int) -> None:
        super().__init__()
        self.generator = SmallUNet(channels)
        self.dct = ColourDCT(protocol)


class MinusFaceScheme(Scheme):
    """MinusFace: the channel-shuffled, decoded residue of a learned regeneration (see the
    module).

    ``encode``: uint8 faces ``(N, S, S, 3)`` -> 192 colour DCT channels ``(N, 192, S, S)``
    float32 (8-bit units); ``client_features``: ``(N, 3, S, S)`` float32 RGB in
    ``protocol.pixel_range``; ``server_input``: what was sent.
    """

    name = "minusface"
    in_channels = 3

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        self.n_channels = 3 * protocol.scale**2
        self._parts = _Parts(protocol, self.n_channels)

    def parts(self) -> nn.Module:
        return self._parts

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        return colour_channels(faces, self.protocol, tuple(range(self.protocol.scale**2)))

    def regenerate(self, encoded: torch.Tensor) -> torch.Tensor:
        """The generator's regeneration ``(N, 192, S, S)`` of :meth:`encode`'s output."""
        return self._parts.generator(encoded / _UNIT) * _UNIT

    def decode(self, coeffs: torch.Tensor) -> torch.Tensor:
        """192 colour channels ``(N, 192, S, S)`` -> RGB ``(N, 3, S, S)`` in
        ``protocol.pixel_range``, clipped as a uint8 image would be."""
        planes = self._parts.dct.inverse(coeffs.unflatten(1, (3, -1)))
        rgb = rgb_from_ycbcr(planes).clamp(0.0, 255.0)
        lo, hi = self.protocol.pixel_range
        return rgb * ((hi - lo) / 255.0) + lo

    def randomise(self, encoded: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        residue = encoded - self.regenerate(encoded)
        n, c, h, w = residue.shape
        perm = per_face_permutations(n, c, generator).to(residue.device)
        shuffled = torch.gather(residue, 1, perm[:, :, None, None].expand(n, c, h, w))
        return self.decode(shuffled)

    def training_loss(self, *, faces: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
        """``5 * mean |x - decode(G(encode(x)))|`` with ``x`` the faces in
        ``protocol.pixel_range`` (the generator's regeneration loss)."""
        lo, hi = self.protocol.pixel_range
        x = faces.permute(0, 3, 1, 2).to(torch.float32) * ((hi - lo) / 255.0) + lo
        regenerated = self.decode(self.regenerate(self.encode(faces)))
        return GENERATION_WEIGHT * (x - regenerated).abs().mean()


register_scheme(MinusFaceScheme.name, MinusFaceScheme)
