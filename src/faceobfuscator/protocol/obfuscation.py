"""Identity-retained stochastic obfuscation (Algorithm 1) and identity recovery (Algorithm 2).

One implementation in torch; numpy arrays are accepted and returned as numpy. Shapes:
features ``(..., K, H, W)``, normalised and scaled per channel (the last two axes).
"""

from __future__ import annotations

import math
import secrets
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig

__all__ = [
    "secure_generator",
    "self_normalise",
    "obfuscate",
    "recover",
    "recovery_exponent",
]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def secure_generator() -> torch.Generator:
    """A fresh torch generator seeded from the operating system's secure source."""
    g = torch.Generator()
    g.manual_seed(secrets.randbits(63))
    return g


def _as_tensor(x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        if not x.flags.writeable:  # decoded payloads are read-only; torch wants to own a copy
            x = x.copy()
        return torch.from_numpy(np.ascontiguousarray(x)), True
    if isinstance(x, torch.Tensor):
        return x, False
    raise InputError(f"expected a numpy array or torch tensor, got {type(x).__name__}")


def _back(t: torch.Tensor, was_numpy: bool):
    return t.numpy() if was_numpy else t


def _check_features(t: torch.Tensor, what: str) -> None:
    if t.ndim < 3:
        raise InputError(f"{what}: expected features (..., K, H, W), got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        raise InputError(f"{what}: expected float features, got {t.dtype}")


def self_normalise(features: ArrayT, config: ProtocolConfig) -> ArrayT:
    """``(f - mean) / sqrt(var + beta)`` per channel, variance Bessel-corrected."""
    t, was_np = _as_tensor(features)
    _check_features(t, "self_normalise")
    n = t.shape[-1] * t.shape[-2]
    if n < 2:
        raise InputError(f"self_normalise: a channel needs at least 2 elements, got {n}")
    flat = t.reshape(*t.shape[:-2], n)
    # float64 sums: one pass each, and no cancellation for channels of |mean| << std
    total = flat.sum(-1, dtype=torch.float64)
    squares = torch.linalg.vecdot(flat, flat).to(torch.float64)
    mean = total / n
    var = ((squares - total * mean) / (n - 1)).clamp_min(0.0)
    inv_std = torch.rsqrt(var + config.beta)
    scale = inv_std.to(t.dtype)[..., None, None]
    shift = (-mean * inv_std).to(t.dtype)[..., None, None]
    return _back(torch.addcmul(shift, t, scale), was_np)


@lru_cache(maxsize=8)
def _parity_table(lo: int, hi: int) -> tuple[np.ndarray, int]:
    """Map a random byte to the sign ``(-1)**u`` of ``u = lo + byte % n`` (``n = hi - lo + 1``),
    or to 0 for bytes at or above the largest multiple of ``n`` (rejected, drawn again)."""
    n = hi - lo + 1
    limit = 256 - 256 % n
    r = np.arange(256)
    sign = np.where(r < limit, 1.0 - 2.0 * ((lo + r % n) % 2), 0.0).astype(np.float32)
    sign.setflags(write=False)
    return sign, limit


def _stream_bytes(stream: np.random.Generator, count: int) -> np.ndarray:
    # PCG64's raw 64-bit outputs are uniform over all bits, eight bytes each
    words = stream.bit_generator.random_raw(count // 8 + 1)
    return np.asarray(words, dtype=np.uint64).view(np.uint8)[:count]


def random_signs(
    shape: tuple[int, ...], u_range: tuple[int, int], g: torch.Generator
) -> torch.Tensor:
    """Float32 ``(-1)**u`` with ``u`` exactly uniform on the inclusive ``u_range``.

    On the CPU the bytes come from a PCG64 stream keyed by 128 bits drawn from ``g``, which
    is several times faster than drawing each ``u`` through torch.
    """
    lo, hi = u_range
    if hi - lo + 1 > 256 or g.device.type != "cpu":
        u = torch.randint(lo, hi + 1, shape, generator=g, device=g.device)
        return 1.0 - 2.0 * (u % 2).to(torch.float32)
    key = torch.randint(0, 2**62, (2,), generator=g).tolist()
    stream = np.random.Generator(np.random.PCG64(key))
    table, limit = _parity_table(lo, hi)
    raw = _stream_bytes(stream, math.prod(shape))
    signs = np.take(table, raw)
    todo = np.flatnonzero(raw >= limit)
    while todo.size:  # rejection sampling keeps every value of u equally likely
        fresh = _stream_bytes(stream, todo.size)
        signs[todo] = np.take(table, fresh)
        todo = todo[fresh >= limit]
    return torch.from_numpy(signs.reshape(shape))


def _scale_by_power(t: torch.Tensor, exponents: torch.Tensor, b: float) -> torch.Tensor:
    """``t * b**exponents`` with exact power-of-two scaling when ``b`` is a power of two."""
    log2b = math.log2(b)
    if log2b == round(log2b):
        # a power of two is exact in float32 within the validated exponent range
        return t * torch.pow(2.0, exponents.to(torch.float64) * log2b).to(t.dtype)
    scale = torch.pow(torch.tensor(b, dtype=torch.float64), exponents.to(torch.float64))
    return (t.to(torch.float64) * scale).to(t.dtype)


def obfuscate(
    normalised: ArrayT,
    config: ProtocolConfig,
    *,
    generator: torch.Generator | None = None,
) -> ArrayT:
    """Multiply every element by ``(-1)**u`` and every channel by ``b**v``.

    ``u`` and ``v`` are drawn independently for every element and every channel (of every
    image in a batch) from ``config.u_range`` and ``config.v_range``. Without a generator a
    fresh one is seeded from the operating system's secure source, so no draw is ever
    reused across calls.
    """
    t: torch.Tensor
    t, was_np = _as_tensor(normalised)
    _check_features(t, "obfuscate")
    g = secure_generator() if generator is None else generator
    signs = random_signs(tuple(t.shape), config.u_range, g).to(t.device)
    v_shape = (*t.shape[:-2], 1, 1)
    v = torch.randint(
        config.v_range[0], config.v_range[1] + 1, v_shape, generator=g, device=g.device
    )
    return _back(_scale_by_power(t, v.to(t.device), config.b).mul_(signs), was_np)


def recovery_exponent(features: ArrayT, config: ProtocolConfig) -> ArrayT:
    """``r = floor(-log_b max|e_k|)`` per channel, computed exactly; 0 for all-zero channels.

    Returns an int64 array of shape ``(..., K)``.
    """
    t: torch.Tensor
    t, was_np = _as_tensor(features)
    _check_features(t, "recover")
    m = t.abs().amax(dim=(-2, -1)).to(torch.float64)
    nonzero = m > 0
    safe = torch.where(nonzero, m, torch.ones_like(m))
    b = config.b
    log2b = math.log2(b)
    if log2b == round(log2b):
        # m = f * 2**p with f in [0.5, 1): -log2 m lies in (-p, 1 - p], exactly 1 - p iff f == 0.5
        f, p = torch.frexp(safe)
        k = int(round(log2b))
        r2 = -p.to(torch.int64) + (f == 0.5).to(torch.int64)  # floor(-log2 m)
        r = torch.div(r2, k, rounding_mode="floor")  # floor(floor(x)/k) == floor(x/k)
    else:
        r = torch.floor(-torch.log(safe) / math.log(b)).to(torch.int64)
        # fix the rounding of the logarithm: want m * b**r <= 1 < m * b**(r + 1)
        bt = torch.tensor(b, dtype=torch.float64)
        r = torch.where(safe * torch.pow(bt, r.double()) > 1, r - 1, r)
        r = torch.where(safe * torch.pow(bt, (r + 1).double()) <= 1, r + 1, r)
    r = torch.where(nonzero, r, torch.zeros_like(r))
    return _back(r, was_np)


def recover(obfuscated: ArrayT, config: ProtocolConfig) -> ArrayT:
    """Identity recovery: ``d_k = e_k * b**(r_k + bias)``; all-zero channels stay zero."""
    t, was_np = _as_tensor(obfuscated)
    r = recovery_exponent(t, config)
    return _back(_scale_by_power(t, (r + config.bias)[..., None, None], config.b), was_np)
