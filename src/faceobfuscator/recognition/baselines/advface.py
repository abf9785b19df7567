"""AdvFace (Wang et al., "Privacy-Preserving Adversarial Facial Features", CVPR 2023), as
a scheme.

The client sends the unprotected feature (here: the ArcFace input, the RGB face in
``[-1, 1]``, so scenario C leaks the face as it is); what the server stores is an
adversarially perturbed template: a bounded perturbation that misleads a shadow
reconstruction network while the template stays within a small distance of the feature, so
recognition is kept (scenario D sees the perturbed template, not the feature).

No public code exists; written from the paper's description. Assumptions:

- The shadow reconstruction network (:class:`ShadowDecoder`, the scheme's trainable parts)
  is a small convolutional decoder from the feature to the face in ``[0, 1]``, trained by
  the ordinary training loop beside the server network with a mean squared error
  (:meth:`AdvFaceScheme.training_loss`; the feature is detached, so the recognition network
  is not affected). The paper trains a generator of perturbations against a shadow model;
  here the perturbation is found per template by projected gradient ascent (PGD) against
  the trained shadow network, which needs no generator.
- Budget and steps: an L-infinity ball of radius :attr:`AdvFaceScheme.epsilon` = 0.03 in
  the feature's units (about 4/255 of the pixel range), :attr:`AdvFaceScheme.steps` = 10
  signed-gradient steps of ``2.5 * epsilon / steps`` starting from zero (deterministic: the
  same feature gives the same template), objective the shadow network's squared error
  against the face the feature shows.
- Recognition is kept by the budget alone (the template moves at most 0.03 per element);
  the server's network is trained on features, not templates. Table 3's accuracy is that
  of features against features (``faceobf eval verify`` embeds what is sent).
"""

from __future__ import annotations

import torch
from torch import nn

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.schemes import ArcFaceScheme, register_scheme

__all__ = ["ShadowDecoder", "AdvFaceScheme", "perturb_template"]


class ShadowDecoder(nn.Module):
    """A small reconstruction network: features ``(N, C, S, S)`` -> RGB ``(N, 3, S, S)``
    in ``[0, 1]`` (three 3x3 convolutions, ``width`` channels between them)."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 3, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def perturb_template(
    feature: torch.Tensor,
    target: torch.Tensor,
    shadow: nn.Module,
    *,
    epsilon: float,
    steps: int,
) -> torch.Tensor:
    """PGD: ``feature + delta`` with ``|delta| <= epsilon`` (every element) that maximises
    the squared error of ``shadow(feature + delta)`` against ``target`` (RGB ``[0, 1]``);
    ``steps`` signed steps of ``2.5 * epsilon / steps`` from ``delta = 0``. The shadow's
    parameters are not changed and get no gradient."""
    step = 2.5 * epsilon / max(steps, 1)
    with torch.inference_mode(False), torch.enable_grad():
        x = feature.detach().clone()
        t = target.detach().clone()
        delta = torch.zeros_like(x, requires_grad=True)
        for _ in range(steps):
            loss = (shadow(x + delta) - t).pow(2).mean()
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta += step * grad.sign()
                delta.clamp_(-epsilon, epsilon)
        return (x + delta).detach()


class AdvFaceScheme(ArcFaceScheme):
    """AdvFace: sends the ArcFace input ``(N, 3, S, S)`` float32 unchanged; stores
    :func:`perturb_template` of it against the trained :class:`ShadowDecoder`. See the
    module docstring for the paper and the assumptions."""

    name = "advface"
    epsilon = 0.03
    steps = 10

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        self.shadow = ShadowDecoder(self.in_channels)

    def parts(self) -> ShadowDecoder:
        return self.shadow

    def _face(self, sent: torch.Tensor) -> torch.Tensor:
        lo, hi = self.protocol.pixel_range
        return ((sent - lo) / (hi - lo)).clamp(0, 1)

    def training_loss(self, *, faces: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
        feature = sent.detach()
        return (self.shadow(feature) - self._face(feature)).pow(2).mean()

    def stored(self, sent: torch.Tensor) -> torch.Tensor:
        return perturb_template(
            sent, self._face(sent), self.shadow, epsilon=self.epsilon, steps=self.steps
        )


register_scheme(AdvFaceScheme.name, AdvFaceScheme)
