"""Image similarity metrics and confidence intervals.

Images are float tensors ``(N, 3, H, W)`` in [0, 1] (RGB, channels first). Every metric
returns one value per image, so that the caller can report a mean and its interval.
SSIM follows Wang et al. (IEEE TIP 2004): an 11x11 Gaussian window of sigma 1.5,
``K1 = 0.01``, ``K2 = 0.03``, data range 1, statistics over the window's valid positions,
averaged over channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from faceobfuscator.errors import InputError

__all__ = ["Interval", "mean_interval", "mse", "psnr", "ssim", "check_images", "to_unit_rgb"]

_WINDOW = 11
_SIGMA = 1.5
_K1, _K2 = 0.01, 0.03


def check_images(x: torch.Tensor, what: str = "images") -> torch.Tensor:
    """``x`` as float64 ``(N, C, H, W)``; raises if it is not a float batch of images."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not torch.is_floating_point(x):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"{what}: expected float images (N, C, H, W) in [0, 1], got {got}")
    return x.to(torch.float64)


def to_unit_rgb(faces: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 faces ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` in [0, 1]."""
    t = torch.as_tensor(faces)
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise InputError(f"expected uint8 faces (N, H, W, 3), got {t.dtype} {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).to(torch.float32).div_(255.0).contiguous()


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = check_images(a, "reconstruction"), check_images(b, "original")
    if a.shape != b.shape:
        raise InputError(f"image batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return a, b


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image ``(N,)``."""
    a, b = _pair(a, b)
    return (a - b).pow(2).mean(dim=(1, 2, 3))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image ``(N,)`` for data range 1 (inf if equal)."""
    return -10.0 * torch.log10(mse(a, b))


def gaussian_window(size: int = _WINDOW, sigma: float = _SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian ``(size,)`` float64."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    gx = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    gy = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    return F.conv2d(F.conv2d(x, gx, groups=c), gy, groups=c)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image ``(N,)``, mean over channels and valid windows."""
    a, b = _pair(a, b)
    if min(a.shape[-2:]) < _WINDOW:
        raise InputError(f"SSIM needs images of at least {_WINDOW}x{_WINDOW}, got {a.shape}")
    g = gaussian_window()
    mu_a, mu_b = _filter(a, g), _filter(b, g)
    var_a = _filter(a * a, g) - mu_a**2
    var_b = _filter(b * b, g) - mu_b**2
    cov = _filter(a * b, g) - mu_a * mu_b
    c1, c2 = _K1**2, _K2**2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean(dim=(1, 2, 3))


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided 95% confidence interval (normal approximation; for a
    share, the Wilson score interval)."""

    mean: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95": [self.low, self.high], "n": self.n}


_Z95 = 1.959963984540054


def mean_interval(
    values: np.ndarray | torch.Tensor | list[float], *, share: bool = False
) -> Interval:
    """Mean and 95% interval of per-image values. With ``share=True`` the values are 0/1
    outcomes and the Wilson interval is used (it stays inside [0, 1] and is sane at 0 and 1).
    Non-finite values (a PSNR of inf for an exact copy) are clipped to the finite range
    of float64 before averaging, so they cannot silently vanish."""
    v = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu(), dtype=np.float64)
    v = v.reshape(-1)
    n = int(v.size)
    if n == 0:
        raise InputError("cannot average an empty set of values")
    if np.isnan(v).any():
        raise InputError(f"{int(np.isnan(v).sum())} of {n} values are NaN")
    v = np.nan_to_num(v, posinf=np.finfo(np.float64).max, neginf=np.finfo(np.float64).min)
    m = float(v.mean())
    if share:
        if not np.isin(v, (0.0, 1.0)).all():
            raise InputError("share=True expects 0/1 outcomes")
        z2 = _Z95**2
        centre = (m + z2 / (2 * n)) / (1 + z2 / n)
        half = _Z95 * math.sqrt(m * (1 - m) / n + z2 / (4 * n * n)) / (1 + z2 / n)
        return Interval(m, max(0.0, centre - half), min(1.0, centre + half), n)
    sd = float(v.std(ddof=1)) if n > 1 else 0.0
    half = _Z95 * sd / math.sqrt(n)
    return Interval(m, m - half, m + half, n)
