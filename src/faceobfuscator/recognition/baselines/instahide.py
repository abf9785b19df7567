"""InstaHide (Huang, Song, Li and Arora, "InstaHide: Instance-hiding Schemes for Private
Distributed Learning", ICML 2020), cross-dataset, ``k = 2``, as a scheme.

Each face ``x`` (the ArcFace input: RGB in ``[-1, 1]``, channels first) is mixed with one
image ``p`` drawn from a public set, ``lam_1 * x + lam_2 * p``, and every element's sign is
then flipped at random: ``sent = sigma * (lam_1 * x + lam_2 * p)``, ``sigma`` uniform in
``{-1, +1}`` per element. A fresh draw (weights, public image, signs) for every encoding.

Written from the paper and the authors' code (github.com/Hazelsuko07/InstaHide,
``train_cross.py``: ``mixup_data``). Choices, as there unless said:

- Weights: ``lam = |g| / sum(|g|)`` with ``g ~ N(0, I_k)``, redrawn until the largest is at
  most 0.65 (``--upper``) and the private weight at least 0.3 (``--dom``; implied by the
  first for ``k = 2``).
- Signs: one independent sign per element (channel and pixel), as the code's
  ``torch.randint(2, size=x.shape)``.
- The public set: aligned FairFace crops (the cross-dataset variant mixes with a public
  dataset; FairFace is a face dataset disjoint from the benchmarks). They are not shipped:
  the scheme reads up to :data:`MAX_PUBLIC` PNG crops from the folder named by the
  environment variable ``FACEOBF_INSTAHIDE_PUBLIC`` (default ``cache/aligned/fairface/val``,
  made by ``faceobf data prepare``), sorted by path, on first use. A deployment would ship
  its own licensed public set the same way (a folder of aligned crops);
  :meth:`InstaHideScheme.set_public_faces` sets one in code.
- The paper labels the mix with the mixed labels; here only the private face's identity is
  learnt (the public image has no identity in this task), as the cross-dataset setting
  does for public images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.schemes import ArcFaceScheme, check_faces, register_scheme

__all__ = ["InstaHideScheme", "mixing_weights", "PUBLIC_ENV", "DEFAULT_PUBLIC", "MAX_PUBLIC"]

PUBLIC_ENV = "FACEOBF_INSTAHIDE_PUBLIC"
DEFAULT_PUBLIC = "cache/aligned/fairface/val"
MAX_PUBLIC = 2048


def mixing_weights(
    n: int, *, k: int = 2, upper: float = 0.65, generator: torch.Generator
) -> torch.Tensor:
    """InstaHide's weights ``(n, k)`` float32 on the generator's device: ``|g| / sum |g|``,
    ``g`` standard normal, redrawn (per row) until the largest is at most ``upper``."""
    if k < 2 or not 1 / k < upper <= 1:
        raise ConfigError(f"need k >= 2 and 1/k < upper <= 1, got k={k}, upper={upper}")
    dev = generator.device
    out = torch.empty(n, k, device=dev)
    todo = torch.arange(n, device=dev)
    while todo.numel():
        g = torch.randn(todo.numel(), k, generator=generator, device=dev).abs()
        lam = g / g.sum(1, keepdim=True).clamp_min(1e-12)
        ok = lam.amax(1) <= upper
        out[todo[ok]] = lam[ok]
        todo = todo[~ok]
    return out


def _read_public(folder: Path, size: int) -> torch.Tensor:
    from PIL import Image

    paths = sorted(folder.rglob("*.png"))[:MAX_PUBLIC]
    if not paths:
        raise ConfigError(
            f"InstaHide's public set: no aligned PNG crops in {folder}; run `faceobf data "
            f"prepare fairface` or point {PUBLIC_ENV} at a folder of aligned crops"
        )
    faces = []
    for p in paths:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"))
        if a.shape != (size, size, 3):
            raise ConfigError(f"{p}: public crop of shape {a.shape}, expected ({size}, {size}, 3)")
        faces.append(a)
    return torch.from_numpy(np.stack(faces))


class InstaHideScheme(ArcFaceScheme):
    """InstaHide, ``k = 2``, cross-dataset: ``(N, 3, S, S)`` float32 mixes of each face
    with a public image, signs flipped at random. See the module docstring."""

    name = "instahide"
    k = 2
    upper = 0.65

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        self._public: torch.Tensor | None = None  # uint8 (M, S, S, 3)
        self._encoded: dict[torch.device, torch.Tensor] = {}

    def set_public_faces(self, faces: torch.Tensor) -> None:
        """Use the aligned uint8 faces ``(M, S, S, 3)`` as the public set."""
        self._public = check_faces(faces, self.protocol).cpu()
        self._encoded = {}

    def public_faces(self) -> torch.Tensor:
        """The public set, uint8 ``(M, S, S, 3)`` (read on first use, see the module)."""
        if self._public is None:
            folder = Path(os.environ.get(PUBLIC_ENV, DEFAULT_PUBLIC))
            self.set_public_faces(_read_public(folder, self.protocol.image_size))
        assert self._public is not None
        return self._public

    def _public_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._encoded:
            self._encoded[device] = self.encode(self.public_faces().to(device))
        return self._encoded[device]

    def randomise(self, encoded: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        n, dev = encoded.shape[0], encoded.device
        public = self._public_on(dev)
        lam = mixing_weights(n, k=self.k, upper=self.upper, generator=generator).to(dev)
        pick = torch.randint(0, public.shape[0], (n,), generator=generator, device=dev)
        mixed = lam[:, 0, None, None, None] * encoded + lam[:, 1, None, None, None] * public[pick]
        signs = torch.randint(0, 2, encoded.shape, generator=generator, device=dev)
        return mixed * (2 * signs - 1).to(mixed.dtype)


register_scheme(InstaHideScheme.name, InstaHideScheme)
