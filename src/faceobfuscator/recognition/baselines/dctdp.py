"""DCTDP (Ji et al., "Privacy-Preserving Face Recognition with Learnable Privacy Budgets in
Frequency Domain", ECCV 2022; code: Tencent/TFace ``recognition/tasks/dctdp``).

The client takes the DC-free block-DCT channels of the colour face and adds Laplace noise
whose per-element budget is learned jointly with the recognition network; the server
network sees the noisy channels.

Assumptions, each against the paper's method section and the authors' code (section and
equation numbers are not cited: the code was read, the paper was not at hand):

- Features: :func:`~faceobfuscator.recognition.colour_dct.colour_channels`, the 63 AC
  channels of each of Y, Cb, Cr (189 channels, colour-major, ``63 * c + k - 1``), in the
  authors' units (8-bit levels minus 128), with the 8x upsampling the authors use but the
  protocol's bilinear convention (TFace: ``align_corners=True``).
- Noise (TFace ``utils.py:NoisyActivation``): ``x + mu + b * e`` with ``e``
  standard Laplace, a learnable mean ``mu`` per element (initially 0) and scale
  ``b = sensitivity / eps`` where the per-element budgets ``eps = softmax(rho) * total``
  share a fixed total ``total = mean_budget * elements``; ``rho`` starts at 0 (every
  element ``eps = mean_budget``). ``mean_budget`` is 0.5 (the issue's choice; TFace's code
  defaults to 4) and the sensitivity 1 level, as in TFace.
- The auxiliary loss ``-log(mean b)`` in TFace's ``NoisyActivation.aux_loss`` is not used
  by their ``train.py``; the fixed total budget alone constrains the allocation, so
  :meth:`training_loss` is ``None`` here too.
- The noise is drawn from the caller's generator (Laplace as a difference of two unit
  exponentials), a fresh draw per face and call.
- Server: TFace feeds the raw noisy coefficients to a Conv-BN stem; here the server
  self-normalises each received channel (zero mean, unit variance per channel and image,
  as for ArcFace-FD) before the network. The step is deterministic and public, so it
  changes nothing an attacker can do, and it lets one recipe train every scheme.
"""

from __future__ import annotations

import torch
from torch import nn

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.obfuscation import self_normalise
from faceobfuscator.recognition.colour_dct import colour_channels
from faceobfuscator.recognition.schemes import Scheme, register_scheme

__all__ = ["DCTDPScheme", "LaplaceBudget", "MEAN_BUDGET", "SENSITIVITY"]

#: the mean per-element privacy budget epsilon (Ji et al. report 0.5 among others)
MEAN_BUDGET = 0.5
#: the L1 sensitivity of one coefficient, in 8-bit levels (TFace: all ones)
SENSITIVITY = 1.0


class LaplaceBudget(nn.Module):
    """Learnable Laplace noise with a fixed total privacy budget.

    Args:
        shape: ``(C, S, S)`` of the features the noise is added to.
        mean_budget: the mean per-element budget epsilon (> 0).
        sensitivity: the coefficients' sensitivity (> 0), in the features' units.

    Attributes:
        loc: ``(C, S, S)`` the noise's learnable mean.
        rho: ``(C, S, S)`` logits of the budget allocation.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        *,
        mean_budget: float = MEAN_BUDGET,
        sensitivity: float = SENSITIVITY,
    ) -> None:
        super().__init__()
        if not (mean_budget > 0 and sensitivity > 0):
            raise ConfigError(
                f"mean_budget={mean_budget} and sensitivity={sensitivity} must be positive"
            )
        self.mean_budget, self.sensitivity = float(mean_budget), float(sensitivity)
        self.loc = nn.Parameter(torch.zeros(shape))
        self.rho = nn.Parameter(torch.zeros(shape))

    def budgets(self) -> torch.Tensor:
        """Per-element budgets ``(C, S, S)``; they sum to ``mean_budget * elements``."""
        n = self.rho.numel()
        share = torch.softmax(self.rho.reshape(-1), dim=0).reshape(self.rho.shape)
        return share * (self.mean_budget * n)

    def scales(self) -> torch.Tensor:
        """Per-element Laplace scales ``sensitivity / budget`` ``(C, S, S)``."""
        return self.sensitivity / self.budgets()

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x + loc + scales * e`` for ``x`` ``(N, C, S, S)``, ``e`` standard Laplace drawn
        from ``generator`` (on ``x``'s device)."""
        # inverse CDF in place (one tensor of x's size): e = -sign(v) log(1 - 2|v|), v
        # uniform on (-1/2, 1/2); |v| stops one float32 step short of 1/2 (u = 0 can occur)
        e = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype).sub_(0.5)
        sign = e.sign()
        e.abs_().clamp_(max=0.5 - 2.0**-25).mul_(-2.0).log1p_().mul_(sign).neg_()
        return torch.addcmul(x + self.loc, self.scales(), e)


class DCTDPScheme(Scheme):
    """DCTDP: 189 DC-free colour DCT channels plus learned Laplace noise (see the module).

    ``client_features``: uint8 faces ``(N, S, S, 3)`` -> ``(N, 189, S, S)`` float32 (8-bit
    units); ``server_input``: the same shape, each channel self-normalised.
    """

    name = "dctdp"

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        n = protocol.scale**2
        self.channels = tuple(range(1, n))  # every AC channel: DC removed
        self.in_channels = 3 * len(self.channels)
        s = protocol.image_size
        self._noise = LaplaceBudget((self.in_channels, s, s))

    def parts(self) -> nn.Module:
        return self._noise

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        return colour_channels(faces, self.protocol, self.channels)

    def randomise(self, encoded: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        return self._noise(encoded, generator)

    def server_input(self, sent: torch.Tensor) -> torch.Tensor:
        return self_normalise(sent, self.protocol)


register_scheme(DCTDPScheme.name, DCTDPScheme)
