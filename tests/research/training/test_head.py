"""ArcFace head: the logits by hand and the module against the function."""

import math

import torch
from torch import nn

from faceobfuscator.research.training.head import ArcFaceHead, arcface_logits


def test_arcface_logits_by_hand():
    cos = torch.tensor([[0.5, 0.2], [-0.95, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 0])
    out = arcface_logits(cos, labels, s=64.0, m=0.5)
    # cos(60 deg + 0.5 rad) = 0.5 cos 0.5 - sin 60deg sin 0.5
    target0 = 0.5 * math.cos(0.5) - math.sqrt(3) / 2 * math.sin(0.5)
    # theta + m would pass pi (cos < cos(pi - m) = -0.8776): linear fallback cos - m sin m
    target1 = -0.95 - 0.5 * math.sin(0.5)
    expected = 64 * torch.tensor([[target0, 0.2], [target1, 0.1]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    assert abs(target0 - 0.023596) < 1e-6


def test_head_module_agrees_with_function():
    torch.manual_seed(0)
    head = ArcFaceHead(5, 8, s=30.0, m=0.3)
    emb, labels = torch.randn(4, 8), torch.tensor([0, 1, 4, 2])
    cos = nn.functional.normalize(emb) @ nn.functional.normalize(head.weight).T
    torch.testing.assert_close(head(emb, labels), arcface_logits(cos, labels, s=30.0, m=0.3))
