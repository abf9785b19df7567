"""Learning-rate schedules by step: linear warm-up, then polynomial or cosine decay to zero."""

from __future__ import annotations

import math

__all__ = ["poly_lr", "cosine_lr"]


def poly_lr(step: int, *, total: int, base: float, power: float = 2.0, warmup: int = 0) -> float:
    """``base * step / warmup`` during warm-up, then
    ``base * (1 - (step - warmup) / (total - warmup)) ** power``; 0 from ``total`` on."""
    if warmup > 0 and step < warmup:
        return base * step / warmup
    if step >= total:
        return 0.0
    return base * (1.0 - (step - warmup) / max(total - warmup, 1)) ** power


def cosine_lr(step: int, *, total: int, base: float, warmup: int = 0) -> float:
    """``base * step / warmup`` during warm-up, then half a cosine from ``base`` to 0 at
    ``total``; 0 from ``total`` on."""
    if warmup > 0 and step < warmup:
        return base * step / warmup
    if step >= total:
        return 0.0
    t = (step - warmup) / max(total - warmup, 1)
    return base * 0.5 * (1.0 + math.cos(math.pi * t))
