"""Reconstruction attacks, registered by name.

An attack learns a map from a leaked feature map to the face it came from. It sees only
tensors: batches of inputs ``(N, C, S, S)`` float32 with any channel count ``C``, and
targets ``(N, 3, S, S)`` RGB in [0, 1]. Nothing here knows about schemes, so a new
protection scheme needs no change to this module.

- ``dn``: DN-based, :class:`~faceobfuscator.research.privacy.nets.NbNetReconstructor`, L1 loss.
- ``pix2pix``: cGAN, U-Net generator and 70x70 PatchGAN, ``GAN + l1_weight * L1``.

Both use Adam with ``lr = 2e-4`` and ``beta1 = 0.5`` unless the settings say otherwise.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.registry import Registry
from faceobfuscator.research.privacy.nets import (
    NbNetReconstructor,
    PatchDiscriminator,
    UNetGenerator,
)

__all__ = [
    "AttackSettings",
    "TrainLog",
    "ReconstructionAttack",
    "DNAttack",
    "Pix2PixAttack",
    "register_attack",
    "get_attack",
    "list_attacks",
]

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class AttackSettings:
    """Size and schedule of one attack's training.

    Attributes:
        steps: optimiser steps.
        batch_size: images per step (the caller's batches must have this size).
        width: channels of the first layer; the papers use 64.
        lr, beta1, beta2: Adam.
        l1_weight: weight of the L1 term against the GAN term (pix2pix; 100 in the paper).
        dense_layers: layers per dense block (DN-based).
        max_seconds: stop early once training has taken this long (a CPU budget); the log
            records the steps actually taken.
    """

    steps: int = 500
    batch_size: int = 16
    width: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    l1_weight: float = 100.0
    dense_layers: int = 3
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        problems = []
        for name in ("steps", "batch_size", "width", "dense_layers"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                problems.append(f"{name}={v!r} must be a positive integer")
        if not (self.lr > 0 and 0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            problems.append(f"lr={self.lr}, betas=({self.beta1}, {self.beta2}) are not valid")
        if self.max_seconds is not None and not self.max_seconds > 0:
            problems.append(f"max_seconds={self.max_seconds} must be > 0 or null")
        if self.l1_weight < 0:
            problems.append(f"l1_weight={self.l1_weight} must be >= 0")
        if problems:
            raise ConfigError("invalid attack settings:\n  - " + "\n  - ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainLog:
    """What happened during training: the loss every ``every`` steps, the number of steps
    skipped because the loss was not finite (inputs far outside float32's useful range do
    this), and the wall time."""

    losses: list[float] = field(default_factory=list)
    every: int = 1
    nonfinite_steps: int = 0
    seconds: float = 0.0
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "losses": self.losses,
            "every": self.every,
            "nonfinite_steps": self.nonfinite_steps,
            "seconds": round(self.seconds, 2),
        }


def _check_inputs(x: torch.Tensor, in_channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not torch.is_floating_point(x):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"expected float features (N, C, S, S), got {got}")
    if x.shape[1] != in_channels:
        raise InputError(f"this attack was built for {in_channels} channels, got {x.shape[1]}")
    if x.shape[-1] % 16 or x.shape[-2] % 16:
        raise InputError(f"feature maps must be a multiple of 16 on each side, got {x.shape}")


class ReconstructionAttack:
    """Base class: ``fit`` on (features, image) batches, then ``reconstruct``.

    Subclasses build their networks in ``__init__`` and implement :meth:`_step`.
    """

    name: str = ""

    def __init__(
        self, in_channels: int, settings: AttackSettings, *, device: str | torch.device = "cpu"
    ) -> None:
        if not isinstance(in_channels, int) or in_channels < 1:
            raise InputError(f"in_channels={in_channels!r} must be a positive integer")
        self.in_channels = in_channels
        self.settings = settings
        self.device = torch.device(device)
        self.seed = 0
        self.generator_net: nn.Module = nn.Identity()

    def _optimizer(self, params: Any) -> torch.optim.Adam:
        s = self.settings
        return torch.optim.Adam(params, lr=s.lr, betas=(s.beta1, s.beta2))

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        raise NotImplementedError

    def fit(self, batches: Batches, *, log_every: int = 25) -> TrainLog:
        """Train for ``settings.steps`` steps, drawing one batch per step. Dropout draws
        from torch's generator, seeded here from ``self.seed`` and restored afterwards."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed + 1)
            return self._fit(batches, log_every)

    def _fit(self, batches: Batches, log_every: int) -> TrainLog:
        log = TrainLog(every=log_every)
        start = time.perf_counter()
        self.generator_net.train()
        running, count = 0.0, 0
        for step in range(self.settings.steps):
            try:
                x, y = next(batches)
            except StopIteration:
                raise InputError(f"the batch source ran dry after {step} steps") from None
            _check_inputs(x, self.in_channels)
            loss = self._step(x.to(self.device), y.to(self.device))
            if not math.isfinite(loss):
                log.nonfinite_steps += 1
            else:
                running, count = running + loss, count + 1
            log.steps = step + 1
            if (step + 1) % log_every == 0:
                log.losses.append(running / count if count else float("nan"))
                running, count = 0.0, 0
            limit = self.settings.max_seconds
            if limit is not None and time.perf_counter() - start > limit:
                break
        log.seconds = time.perf_counter() - start
        return log

    @torch.no_grad()
    def reconstruct(self, inputs: torch.Tensor, *, batch_size: int = 64) -> torch.Tensor:
        """Images ``(N, 3, S, S)`` in [0, 1] for features ``(N, C, S, S)``; non-finite
        outputs (from non-finite inputs) become 0."""
        _check_inputs(inputs, self.in_channels)
        self.generator_net.eval()
        out = []
        for chunk in inputs.split(batch_size):
            out.append(self.generator_net(chunk.to(self.device)).float().cpu())
        return torch.nan_to_num(torch.cat(out), nan=0.0).clamp_(0.0, 1.0)


def _finite_step(loss: torch.Tensor, opt: torch.optim.Optimizer) -> float:
    """Back-propagate and step only when the loss is finite: one overflowing batch must not
    turn every weight into NaN."""
    value = float(loss.detach())
    opt.zero_grad(set_to_none=True)
    if math.isfinite(value):
        loss.backward()
        opt.step()
    return value


class DNAttack(ReconstructionAttack):
    """DN-based reconstruction: NbNet-style encoder-decoder trained with L1."""

    name = "dn"

    def __init__(
        self, in_channels: int, settings: AttackSettings, *, device: str | torch.device = "cpu"
    ) -> None:
        super().__init__(in_channels, settings, device=device)
        self.generator_net = NbNetReconstructor(
            in_channels, width=settings.width, dense_layers=settings.dense_layers
        ).to(self.device)
        self.opt = self._optimizer(self.generator_net.parameters())

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return _finite_step(F.l1_loss(self.generator_net(x), y), self.opt)


class Pix2PixAttack(ReconstructionAttack):
    """pix2pix: U-Net generator and PatchGAN discriminator, BCE GAN loss plus weighted L1.
    The reported loss is the generator's L1 term (comparable with the DN attack)."""

    name = "pix2pix"

    def __init__(
        self, in_channels: int, settings: AttackSettings, *, device: str | torch.device = "cpu"
    ) -> None:
        super().__init__(in_channels, settings, device=device)
        self.generator_net = UNetGenerator(in_channels, width=settings.width).to(self.device)
        self.discriminator = PatchDiscriminator(in_channels, width=settings.width).to(self.device)
        self.opt_g = self._optimizer(self.generator_net.parameters())
        self.opt_d = self._optimizer(self.discriminator.parameters())

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        fake = self.generator_net(x)
        # discriminator: real pairs -> 1, generated pairs -> 0
        self.discriminator.train()
        real_logits = self.discriminator(x, y)
        fake_logits = self.discriminator(x, fake.detach())
        d_loss = 0.5 * (
            F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        )
        _finite_step(d_loss, self.opt_d)
        # generator: fool the discriminator and stay close to the target in L1
        logits = self.discriminator(x, fake)
        l1 = F.l1_loss(fake, y)
        g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        _finite_step(g_loss + self.settings.l1_weight * l1, self.opt_g)
        return float(l1.detach())


AttackFactory = Callable[..., ReconstructionAttack]
_REGISTRY: Registry[AttackFactory] = Registry("attack")


def register_attack(name: str, factory: AttackFactory) -> None:
    """Register ``factory(in_channels, settings, *, device) -> ReconstructionAttack``."""
    _REGISTRY.add(name, factory)


def list_attacks() -> list[str]:
    """Registered attack names, sorted."""
    return _REGISTRY.names()


def get_attack(
    name: str,
    in_channels: int,
    settings: AttackSettings,
    *,
    seed: int,
    device: str | torch.device = "cpu",
) -> ReconstructionAttack:
    """A fresh, untrained attack ``name`` for inputs of ``in_channels`` channels, its
    initial weights drawn from ``seed`` (torch's global generator is left as it was); an
    unknown name lists the known ones."""
    factory = _REGISTRY.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attack = factory(in_channels, settings, device=device)
    attack.seed = seed
    return attack


for _cls in (DNAttack, Pix2PixAttack):
    register_attack(_cls.name, _cls)
