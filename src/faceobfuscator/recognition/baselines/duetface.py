"""DuetFace (Mi et al., "DuetFace: Collaborative Privacy-Preserving Face Recognition via
Channel Splitting in the Frequency Domain", ACM MM 2022; code: Tencent/TFace
``recognition/tasks/duetface``).

The colour face's DCT channels are split: the low frequencies stay on the client and feed
a small client network whose feature map, masked to the face region, guides the server
network; the server network sees the remaining (high-frequency) channels. Everything the
client sends (the high-frequency channels and the guiding map) is what an attacker on the
channel captures.

Assumptions, each against the paper's method section and the authors' code (section and
equation numbers are not cited: the code was read, the paper was not at hand):

- Features: :func:`~faceobfuscator.recognition.colour_dct.colour_channels` of all 64
  frequencies of Y, Cb, Cr in the authors' units, with 8x upsampling as the authors but
  the protocol's bilinear convention (TFace: ``align_corners=True``).
- Split (TFace ``train.yaml`` ``SUB_CHS``): frequencies {0, 1, 2, 3, 4, 5, 8, 9, 16, 24} of
  each colour (30 channels, DC included) stay on the client; the other 54 per colour (162)
  are sent.
- Client network: TFace uses a MobileFaceNet pre-trained as a face recogniser, then frozen,
  and sends feature maps of four stages (56x56 to 7x7). Here a small network
  (:class:`ClientNet`: two 3x3 conv-BN-PReLU layers, the first of stride 2, and a 1x1 conv
  to one map) on the self-normalised client channels is trained jointly with the server
  network, and one map is sent, bilinearly resized to the face size.
- Mask (TFace ``InteractiveBlock``): the map is min-max normalised per face, multiplied by a
  face-region mask, and min-max normalised again. TFace's face region is the convex hull of
  98 PFLD landmarks; the faces here are aligned to the five-point template, so the region
  is a fixed ellipse around it (:func:`face_region`), and no landmark model is shipped.
- Guidance: TFace adds ``w * x * mask`` (``w`` learnable, from 0) to the server's feature
  maps at four stages. Here it acts once, on the input: the server network receives
  ``z * (1 + mask)`` and the mask itself (``z`` the self-normalised high-frequency
  channels), 163 channels, so the registered backbones serve unchanged; its stem learns the
  weighting.
- No randomness: the same face always gives the same sent tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.obfuscation import self_normalise
from faceobfuscator.recognition.colour_dct import colour_channels
from faceobfuscator.recognition.schemes import Scheme, register_scheme

__all__ = ["DuetFaceScheme", "ClientNet", "CLIENT_FREQUENCIES", "face_region", "minmax"]

#: frequencies of each colour kept on the client (TFace ``SUB_CHS``)
CLIENT_FREQUENCIES = (0, 1, 2, 3, 4, 5, 8, 9, 16, 24)
_EPS = 1e-6


def face_region(protocol: ProtocolConfig) -> torch.Tensor:
    """``(S, S)`` float32 mask, 1 inside an ellipse around the alignment template (centred
    on the nose tip, 0.2 eye distances above it; semi-axes 1.1 and 1.4 eye distances), 0
    outside: where an aligned face is."""
    t = torch.tensor(protocol.template, dtype=torch.float64)
    eyes = t[1] - t[0]
    d = float(torch.linalg.vector_norm(eyes))
    cx, cy = float(t[2, 0]), float(t[2, 1]) - 0.2 * d
    s = protocol.image_size
    yy, xx = torch.meshgrid(
        torch.arange(s, dtype=torch.float64) + 0.5,
        torch.arange(s, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    inside = ((xx - cx) / (1.1 * d)) ** 2 + ((yy - cy) / (1.4 * d)) ** 2 <= 1
    return inside.to(torch.float32)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Each map of ``(N, 1, H, W)`` rescaled to [0, 1] (TFace
    ``reshape_and_normalize_masks``); a constant map becomes 0."""
    lo = x.amin(dim=(-2, -1), keepdim=True)
    hi = x.amax(dim=(-2, -1), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(_EPS)


class ClientNet(nn.Module):
    """The client's network: ``(N, C, S, S)`` -> one map ``(N, 1, S/2, S/2)``."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 2, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.PReLU(width),
            nn.Conv2d(width, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.PReLU(width),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DuetFaceScheme(Scheme):
    """DuetFace: high frequencies sent, low frequencies summarised by a client network into
    a face-masked guiding map (see the module).

    ``encode``: uint8 faces ``(N, S, S, 3)`` -> all 192 colour channels, the 30 client ones
    first; ``client_features``: ``(N, 163, S, S)`` float32, the 162 high-frequency channels
    (8-bit units) then the mask in [0, 1]; ``server_input``: ``(N, 163, S, S)``.
    """

    name = "duetface"

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        n = protocol.scale**2
        self.server_frequencies = tuple(k for k in range(n) if k not in CLIENT_FREQUENCIES)
        self.n_client = 3 * len(CLIENT_FREQUENCIES)
        self.n_server = 3 * len(self.server_frequencies)
        self.in_channels = self.n_server + 1
        self._net = ClientNet(self.n_client)
        self._region = face_region(protocol)

    def parts(self) -> nn.Module:
        return self._net

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        low = colour_channels(faces, self.protocol, CLIENT_FREQUENCIES)
        high = colour_channels(faces, self.protocol, self.server_frequencies)
        return torch.cat([low, high], dim=1)

    def mask(self, low: torch.Tensor) -> torch.Tensor:
        """The guiding map ``(N, 1, S, S)`` in [0, 1] of the client channels ``(N, 30, S, S)``."""
        s = self.protocol.image_size
        attention = self._net(self_normalise(low, self.protocol))
        attention = F.interpolate(attention, size=(s, s), mode="bilinear", align_corners=False)
        region = self._region.to(low.device, low.dtype)
        return minmax(minmax(attention) * region)

    def randomise(self, encoded: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        low, high = encoded[:, : self.n_client], encoded[:, self.n_client :]
        return torch.cat([high, self.mask(low)], dim=1)

    def server_input(self, sent: torch.Tensor) -> torch.Tensor:
        z = self_normalise(sent[:, : self.n_server], self.protocol)
        mask = sent[:, self.n_server :]
        return torch.cat([z * (1 + mask), mask], dim=1)


register_scheme(DuetFaceScheme.name, DuetFaceScheme)
