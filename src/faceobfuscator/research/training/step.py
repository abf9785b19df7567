"""One training step, shared by ``faceobf train`` and the throughput benchmark.

The client's side runs batched on the training device in float32: random horizontal flip
of the uint8 faces, the scheme's clean features, a fresh random protection drawn from a
generator on that device, and the server's input (recovery). Only the network and the
head run under autocast. A scheme with trainable parts runs them here with gradients, and
its own objective (:meth:`~faceobfuscator.recognition.schemes.Scheme.training_loss`) comes
back beside the network input.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from faceobfuscator.recognition.schemes import Scheme
from faceobfuscator.research.training.head import ArcFaceHead

__all__ = [
    "Trainable",
    "DistillTrainable",
    "distill_loss",
    "network_input",
    "scheme_step",
    "autocast",
    "embedder",
]

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Trainable(nn.Module):
    """The embedding network and the margin head as one module (one DDP wrapper)."""

    def __init__(self, network: nn.Module, head: ArcFaceHead) -> None:
        super().__init__()
        self.network, self.head = network, head

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.network(x), labels)


class DistillTrainable(nn.Module):
    """The embedding network and an optional margin head, for distillation: ``forward``
    returns the embeddings ``(N, D)`` and, with a head, the ArcFace logits of the labelled
    rows (``labels >= 0``; unlabelled images carry -1), else ``None``."""

    def __init__(self, network: nn.Module, head: ArcFaceHead | None) -> None:
        super().__init__()
        self.network, self.head = network, head

    def forward(
        self, x: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        embeddings = self.network(x)
        if self.head is None:
            return embeddings, None
        keep = labels >= 0
        return embeddings, self.head(embeddings[keep], labels[keep])


def distill_loss(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    logits: torch.Tensor | None,
    labels: torch.Tensor,
    *,
    cosine_weight: float,
    arcface_weight: float,
) -> torch.Tensor:
    """``cosine_weight * mean(1 - cos(embeddings, targets))`` plus ``arcface_weight`` times
    the cross-entropy of ``logits`` against the labelled rows' labels (computed in float32).

    Args:
        embeddings: ``(N, D)`` network outputs; targets: ``(N, D)`` teacher embeddings.
        logits: ``(L, C)`` for the ``L`` rows with ``labels >= 0``, or ``None``.
    """
    loss = (
        cosine_weight
        * (1 - nn.functional.cosine_similarity(embeddings.float(), targets.float(), dim=1)).mean()
    )
    if logits is not None and logits.shape[0] and arcface_weight:
        loss = loss + arcface_weight * nn.functional.cross_entropy(
            logits.float(), labels[labels >= 0]
        )
    return loss


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """Autocast for ``amp``: ``bf16``/``fp16`` on CUDA, ``bf16`` on CPU (AVX-512-BF16
    makes it about 2.5x faster than float32 there); nothing otherwise."""
    if amp not in _AMP_DTYPES or device.type not in ("cuda", "cpu"):
        return nullcontext()
    if device.type == "cpu" and amp != "bf16":
        return nullcontext()
    return torch.autocast(device.type, dtype=_AMP_DTYPES[amp])


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
    x, _ = scheme_step(scheme, faces, generator=generator, flip=flip, channels_last=channels_last)
    return x


def scheme_step(
    scheme: Scheme,
    faces: torch.Tensor,
    *,
    generator: torch.Generator,
    flip: bool,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`network_input` and the scheme's own training loss for it (``None`` for a
    scheme without one): ``(x (N, in_channels, S, S), loss or None)``."""
    if flip:
        mirror = torch.rand(faces.shape[0], generator=generator, device=faces.device) < 0.5
        faces = torch.where(mirror[:, None, None, None], faces.flip(2), faces)
    sent = scheme.client_features(faces, generator=generator)
    x = scheme.server_input(sent)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    return x, scheme.training_loss(faces=faces, sent=sent)


def embedder(network: nn.Module, device: torch.device, amp: str, channels_last: bool):
    """A function from network inputs to L2-normalised float32 embeddings (eval mode is
    the caller's business)."""

    def embed(x: torch.Tensor) -> torch.Tensor:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), autocast(device, amp):
            return nn.functional.normalize(network(x).float(), dim=1)

    return embed
