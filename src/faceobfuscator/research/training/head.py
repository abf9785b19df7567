"""The ArcFace additive angular margin head (Deng et al. 2019), as in insightface
``arcface_torch``: a pure function on cosines and a thin module holding class centres."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["arcface_logits", "ArcFaceHead"]

_EPS = 1e-7


def arcface_logits(
    cosine: torch.Tensor, labels: torch.Tensor, *, s: float, m: float
) -> torch.Tensor:
    """``s * cos(theta_y + m)`` for the true class ``y`` and ``s * cos(theta_j)`` for the
    others. Where ``theta_y + m`` would pass pi the target logit continues linearly as
    ``cos(theta_y) - m * sin(m)``, keeping it decreasing in ``theta_y``.

    Args:
        cosine: ``(N, C)`` cosines between embeddings and class centres.
        labels: ``(N,)`` int64 true classes.
    """
    cos = cosine.clamp(-1 + _EPS, 1 - _EPS)
    target = cos.gather(1, labels[:, None])
    sin = torch.sqrt(1.0 - target * target)
    with_margin = target * math.cos(m) - sin * math.sin(m)
    fallback = target - math.sin(math.pi - m) * m
    final = torch.where(target > math.cos(math.pi - m), with_margin, fallback)
    return cos.scatter(1, labels[:, None], final) * s


class ArcFaceHead(nn.Module):
    """Class centres ``(num_classes, embedding_size)`` and the margin; returns logits."""

    def __init__(self, num_classes: int, embedding_size: int, *, s: float = 64.0, m: float = 0.5):
        super().__init__()
        self.s, self.m = s, m
        self.weight = nn.Parameter(torch.normal(0, 0.01, (num_classes, embedding_size)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # float32 even under autocast: the margin works on cosines within 1e-7 of +-1
        with torch.autocast(embeddings.device.type, enabled=False):
            cosine = nn.functional.linear(
                nn.functional.normalize(embeddings.float(), dim=1),
                nn.functional.normalize(self.weight.float(), dim=1),
            )
            return arcface_logits(cosine, labels, s=self.s, m=self.m)
