"""Training the linkage network: what leaks -> an independent recognizer's embedding.

The network is the server's own architecture and initialisation (SFace, a new stem for a
leaked tensor that is not RGB), trained by cosine distillation
(:func:`~faceobfuscator.research.training.step.distill_loss`) to the recognizer's
embedding of the original face, with the optimiser of the distillation recipe (AdamW, two
parameter groups, cosine schedule; :mod:`faceobfuscator.research.training`). Each step the
attacker runs its copy of the client on a batch of its faces (a fresh random protection)
and applies its variant's preprocessing; with ``augment`` the faces are first augmented as
the server's recipe does, else mirrored at random.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from faceobfuscator.recognition.backbones import build_backbone, load_pretrained_weights
from faceobfuscator.research.privacy.linkage_config import LinkerSettings
from faceobfuscator.research.privacy.variants import Leak, Preprocessor
from faceobfuscator.research.training.augment import augment_faces
from faceobfuscator.research.training.config import AugmentConfig
from faceobfuscator.research.training.schedule import cosine_lr
from faceobfuscator.research.training.step import autocast, distill_loss

__all__ = ["LinkerLog", "Linker", "train_linker"]

#: training stops when its first this many steps all had a non-finite loss
_GIVE_UP = 3


@dataclass
class LinkerLog:
    """Steps done, seconds, per-step losses, steps skipped for a non-finite loss, and
    whether the time limit stopped training."""

    steps: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)
    nonfinite_steps: int = 0
    stopped_by_time: bool = False

    def to_dict(self) -> dict[str, Any]:
        tail = self.losses[-10:]
        return {
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "first_loss": self.losses[0] if self.losses else None,
            "last_loss_mean10": float(np.mean(tail)) if tail else None,
            "nonfinite_steps": self.nonfinite_steps,
            "stopped_by_time": self.stopped_by_time,
        }


class Linker:
    """A trained linkage network with its preprocessing: :meth:`embed` maps leaked tensors
    ``(N, C, S, S)`` to unit-length predicted embeddings ``(N, D)`` float32 (NaN rows where
    the network's output is not finite)."""

    def __init__(self, network: nn.Module, pre: Preprocessor, device: torch.device, bf16: bool):
        self.network, self.pre, self.device, self.bf16 = network.eval(), pre, device, bf16

    def embed(self, leaked: torch.Tensor, *, batch_size: int = 64) -> np.ndarray:
        out = []
        with torch.inference_mode(), autocast(self.device, "bf16" if self.bf16 else "none"):
            for i in range(0, len(leaked), batch_size):
                x = self.pre(leaked[i : i + batch_size].to(self.device))
                e = self.network(x.contiguous(memory_format=torch.channels_last)).float()
                out.append(nn.functional.normalize(e, dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float32)


def _batch(
    faces: torch.Tensor,
    n: int,
    g: torch.Generator,
    rng: np.random.Generator,
    aug: AugmentConfig | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randint(0, faces.shape[0], (n,), generator=g, device=faces.device)
    batch = faces[idx]
    if aug is not None:
        batch = torch.from_numpy(augment_faces(batch.cpu().numpy(), aug, rng)).to(faces.device)
    else:
        mirror = torch.rand(n, generator=g, device=faces.device) < 0.5
        batch = torch.where(mirror[:, None, None, None], batch.flip(2), batch)
    return batch, idx


def train_linker(
    faces: np.ndarray,
    targets: np.ndarray,
    leak: Leak,
    pre: Preprocessor,
    settings: LinkerSettings,
    *,
    augment: AugmentConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[Linker, LinkerLog]:
    """Train a linkage network on the attacker's faces.

    Args:
        faces: uint8 ``(N, S, S, 3)`` attacker faces.
        targets: ``(N, D)`` the recognizer's embeddings of ``faces`` (any norm; the loss is
            a cosine).
        leak: the attacker's copy of the client (:func:`~.run.make_leak`) or a sealed leak.
        pre: the variant's preprocessing (``pre.in_channels`` sizes the stem).
        settings: budget and optimiser.
        augment: the server recipe's augmentation, or None (random mirror only).

    Steps whose loss is not finite are skipped; when the first three all are, training
    stops (the network keeps its initialisation).
    """
    dev = torch.device(device)
    net = build_backbone("sface", pre.in_channels, targets.shape[1])
    loaded = load_pretrained_weights("sface", net)
    net = net.to(dev).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    old = [p for n, p in net.named_parameters() if n in loaded]
    new = [p for n, p in net.named_parameters() if n not in loaded]
    groups = [
        {"params": ps, "lr_scale": s}
        for ps, s in ((new, 1.0), (old, settings.pretrained_lr_scale))
        if ps
    ]
    opt = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    face_t = torch.from_numpy(faces).to(dev)
    target_t = torch.from_numpy(np.asarray(targets, np.float32)).to(dev)
    g = torch.Generator(dev).manual_seed(seed)
    rng = np.random.default_rng(seed)
    amp = "bf16" if settings.bf16 else "none"
    warmup = round(settings.warmup * settings.steps)
    log = LinkerLog()
    start = time.perf_counter()
    net.train()
    for step in range(settings.steps):
        if time.perf_counter() - start > settings.max_seconds:
            log.stopped_by_time = True
            break
        lr = cosine_lr(step, total=settings.steps, base=settings.lr, warmup=warmup)
        for group in opt.param_groups:
            group["lr"] = lr * group["lr_scale"]
        batch, idx = _batch(face_t, settings.batch_size, g, rng, augment)
        x = pre(leak(batch, g)).contiguous(memory_format=torch.channels_last)
        with autocast(dev, amp):
            emb = net(x)
        loss = distill_loss(emb, target_t[idx], None, idx, cosine_weight=1.0, arcface_weight=0.0)
        log.steps += 1
        if not math.isfinite(float(loss.detach())):
            log.nonfinite_steps += 1  # as-paper on huge leaked values: skip, as the attacks do
            if log.nonfinite_steps == log.steps == _GIVE_UP:
                break  # nothing trains on this input: the budget goes to the other rows
            continue
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.losses.append(float(loss.detach()))
    log.seconds = time.perf_counter() - start
    return Linker(net, pre, dev, settings.bf16), log
