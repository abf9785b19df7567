"""PPFR-FD (Wang et al., "Privacy-Preserving Face Recognition in the Frequency Domain",
AAAI 2022), as a scheme.

The client takes the block DCT of the face, drops the DC channel, keeps a subset of the
AC channels, and sends them shuffled and mixed at random per image; the server's network
learns from the shuffled, mixed channels directly (no recovery).

No public code exists; written from the paper's description. Assumptions:

- Transform: the project's block DCT (:func:`~faceobfuscator.protocol.frequency.fast_transform`,
  ``protocol.scale`` = 8: 64 channels of the greyscale face, each ``S x S``), every channel
  self-normalised as in ``arcface-fd``, so PPFR-FD differs from ArcFace-FD only in its
  channel set and its randomisation.
- Channel subset: the paper chooses it with an analysis network and keeps 36 channels; its
  choice is not published. Here: the first 36 AC channels in JPEG zig-zag order (DC left
  out), i.e. the lowest frequencies, which the frequency-domain recognition literature finds
  carry most of the recognition accuracy. The analysis network is not run.
- Shuffling: a fresh uniform random permutation of the 36 channels for every image.
- Mixing: after the shuffle, consecutive channels ``(a, b)`` become ``((a + b) / sqrt 2,
  (a - b) / sqrt 2)`` (an orthogonal mix of each shuffled pair, energy kept), so no sent
  channel is a single frequency.
- The server stores what is sent.
"""

from __future__ import annotations

import math

import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import fast_transform, to_greyscale
from faceobfuscator.protocol.obfuscation import self_normalise
from faceobfuscator.recognition.schemes import Scheme, check_faces, register_scheme

__all__ = ["PPFRFDScheme", "zigzag", "shuffle_and_mix"]

RETAINED = 36


def zigzag(n: int) -> list[int]:
    """The channels ``k = n * i + j`` of an ``n x n`` block DCT in JPEG zig-zag order
    (DC first)."""
    order = sorted(
        ((i, j) for i in range(n) for j in range(n)),
        key=lambda p: (p[0] + p[1], p[0] if (p[0] + p[1]) % 2 else p[1]),
    )
    return [n * i + j for i, j in order]


def shuffle_and_mix(x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
    """Per image, a random permutation of the channels of ``x`` ``(N, C, H, W)`` (``C``
    even), then each consecutive pair ``(a, b)`` -> ``((a + b), (a - b)) / sqrt 2``."""
    n, c = x.shape[:2]
    if c % 2:
        raise ConfigError(f"shuffle_and_mix needs an even number of channels, got {c}")
    keys = torch.rand(n, c, generator=generator, device=x.device)
    perm = keys.argsort(dim=1)
    shuffled = x.gather(1, perm[:, :, None, None].expand_as(x))
    a, b = shuffled[:, 0::2], shuffled[:, 1::2]
    mixed = torch.stack(((a + b), (a - b)), dim=2) / math.sqrt(2)
    return mixed.reshape(x.shape)


class PPFRFDScheme(Scheme):
    """PPFR-FD: 36 self-normalised AC channels ``(N, 36, S, S)`` float32, shuffled and
    mixed per image. See the module docstring for the paper and the assumptions."""

    name = "ppfr-fd"

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        order = zigzag(protocol.scale)[1:]
        if len(order) < RETAINED:
            raise ConfigError(f"ppfr-fd needs scale >= 7 for {RETAINED} AC channels")
        self.channels = tuple(order[:RETAINED])
        self.in_channels = RETAINED

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        grey = to_greyscale(check_faces(faces, self.protocol), self.protocol)
        chans = fast_transform(grey, self.protocol, channels=self.channels)
        return self_normalise(chans, self.protocol)

    def randomise(self, encoded: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        return shuffle_and_mix(encoded, generator=generator)


register_scheme(PPFRFDScheme.name, PPFRFDScheme)
