"""One training step, shared by ``faceobf train`` and the throughput benchmark.

The client's side runs batched on the training device in float32: random horizontal flip
of the uint8 faces, the scheme's clean features, a fresh random protection drawn from a
generator on that device, and the server's input (recovery). Only the network and the
head run under autocast.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from faceobfuscator.recognition.schemes import Scheme
from faceobfuscator.research.training.head import ArcFaceHead

__all__ = ["Trainable", "network_input", "autocast", "embedder"]

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Trainable(nn.Module):
    """The embedding network and the margin head as one module (one DDP wrapper)."""

    def __init__(self, network: nn.Module, head: ArcFaceHead) -> None:
        super().__init__()
        self.network, self.head = network, head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.network(x), labels)


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """Autocast for ``amp`` on CUDA; nothing on CPU or with ``amp="none"``."""
    if device.type != "cuda" or amp not in _AMP_DTYPES:
        return nullcontext()
    return torch.autocast("cuda", dtype=_AMP_DTYPES[amp])


def network_input(
    scheme: Scheme,
    faces: torch.Tensor,
    *,
    generator: torch.Generator,
    flip: bool,
    channels_last: bool = False,
) -> torch.Tensor:
    """The server's network input for uint8 faces ``(N, S, S, 3)`` on the generator's
    device, each face with a fresh protection (and a coin-flip mirror when ``flip``)."""
    if flip:
        mirror = torch.rand(faces.shape[0], generator=generator, device=faces.device) < 0.5
        faces = torch.where(mirror[:, None, None, None], faces.flip(2), faces)
    x = scheme.server_input(scheme.client_features(faces, generator=generator))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def embedder(network: nn.Module, device: torch.device, amp: str, channels_last: bool):
    """A function from network inputs to L2-normalised float32 embeddings (eval mode is
    the caller's business)."""

    def embed(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(device, amp):
            return nn.functional.normalize(network(x).float(), dim=1)

    return embed
