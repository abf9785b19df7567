"""PartialFace (Mi et al., "Privacy-Preserving Face Recognition Using Random Frequency
Components", ICCV 2023; code: Tencent/TFace ``recognition/tasks/partialface``).

The client prunes the low-frequency (human-perceivable) DCT channels of the colour face,
splits the remaining ones into fixed subsets and sends, for each face, one subset drawn at
random, its channels in one of a few fixed orders drawn at random. The server network is
trained on such random subsets and sees only the one sent.

Assumptions, each against the paper's method section and the authors' code (section
numbers are not cited: the code was read, the paper was not at hand)
(``partialface/utils.py``):

- Features: :func:`~faceobfuscator.recognition.colour_dct.colour_channels` of Y, Cb, Cr in
  the authors' units, with 8x upsampling as the authors but the protocol's bilinear
  convention (TFace: ``align_corners=True``).
- Pruned: the ten lowest frequencies of each colour, ``k`` in {0, 1, 2, 3, 8, 9, 10, 16, 17,
  24} (TFace's ``chs_prune``), leaving 54 per colour.
- Subsets (the paper's S): the 54 remaining frequencies are split into 6 subsets of 9. TFace
  ships one such split and says it "can be randomly and model-wisely generated"; here the
  split is a random permutation drawn once from a fixed seed (:data:`SPLIT_SEED`), so every
  client and server of this scheme agree on it. The same subset is taken in all three
  colours: 27 channels are sent, colour-major.
- Orders (the paper's P): 3 fixed orders of a subset's 9 channels, the first the identity,
  the others drawn from the same seed; each face draws one (TFace draws it per face too).
- Per face, the subset and the order are drawn uniformly from the caller's generator, at
  training and at inference. TFace's training additionally restricts each identity to 3
  of the 6 subsets (chosen by its label) so that no model sees all subsets of one image;
  the scheme sees no labels, so that restriction is not reproduced.
- No trainable client part.
- Server: TFace feeds the raw coefficients to a Conv-BN stem; here the server
  self-normalises each received channel (a deterministic, public step) before the network.
"""

from __future__ import annotations

import numpy as np
import torch

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.obfuscation import self_normalise
from faceobfuscator.recognition.colour_dct import colour_channels
from faceobfuscator.recognition.schemes import Scheme, register_scheme

__all__ = ["PartialFaceScheme", "PRUNED", "N_SUBSETS", "N_ORDERS", "SPLIT_SEED"]

#: low frequencies removed from every colour (TFace ``create_channel_subsets``)
PRUNED = (0, 1, 2, 3, 8, 9, 10, 16, 17, 24)
N_SUBSETS = 6
N_ORDERS = 3
#: seeds the fixed split into subsets and the fixed orders
SPLIT_SEED = 2023


class PartialFaceScheme(Scheme):
    """PartialFace: one random subset of 9 high frequencies per colour, in a random one of
    3 orders, per face (see the module).

    ``encode``: uint8 faces ``(N, S, S, 3)`` -> the 162 unpruned channels ``(N, 162, S, S)``
    float32; ``client_features``: ``(N, 27, S, S)`` float32; ``server_input``: the same
    shape, each channel self-normalised.

    Attributes:
        kept: the 54 unpruned frequencies of a colour, ascending.
        subsets: ``(6, 9)`` indices into ``kept``: the fixed split.
        orders: ``(3, 9)`` the fixed orders of a subset's channels.
    """

    name = "partialface"

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        n = protocol.scale**2
        self.kept = tuple(k for k in range(n) if k not in PRUNED)
        per = len(self.kept) // N_SUBSETS
        rng = np.random.default_rng(SPLIT_SEED)
        split = rng.permutation(len(self.kept))[: per * N_SUBSETS].reshape(N_SUBSETS, per)
        orders = [np.arange(per)] + [rng.permutation(per) for _ in range(N_ORDERS - 1)]
        self.subsets = torch.as_tensor(split, dtype=torch.long)
        self.orders = torch.as_tensor(np.stack(orders), dtype=torch.long)
        self.in_channels = 3 * per

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        return colour_channels(faces, self.protocol, self.kept)

    def select(
        self, encoded: torch.Tensor, subset: torch.Tensor, order: torch.Tensor
    ) -> torch.Tensor:
        """The channels sent for subset indices ``subset`` and order indices ``order`` (both
        ``(N,)`` long): ``(N, 162, S, S)`` -> ``(N, 27, S, S)``."""
        n, _, h, w = encoded.shape
        per_colour = encoded.reshape(n, 3, len(self.kept), h, w)
        subsets = self.subsets.to(encoded.device)[subset]  # (N, 9)
        orders = self.orders.to(encoded.device)[order]  # (N, 9)
        chosen = torch.gather(subsets, 1, orders)  # the subset's channels in the drawn order
        index = chosen[:, None, :, None, None].expand(n, 3, chosen.shape[1], h, w)
        return torch.gather(per_colour, 2, index).reshape(n, -1, h, w)

    def randomise(self, encoded: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        n, dev = encoded.shape[0], encoded.device
        subset = torch.randint(0, N_SUBSETS, (n,), generator=generator, device=dev)
        order = torch.randint(0, N_ORDERS, (n,), generator=generator, device=dev)
        return self.select(encoded, subset, order)

    def server_input(self, sent: torch.Tensor) -> torch.Tensor:
        return self_normalise(sent, self.protocol)


register_scheme(PartialFaceScheme.name, PartialFaceScheme)
