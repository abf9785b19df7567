"""Identity-retained stochastic obfuscation (Algorithm 1) and identity recovery (Algorithm 2).

One implementation in torch; numpy arrays are accepted and returned as numpy. Shapes:
features ``(..., K, H, W)``, normalised and scaled per channel (the last two axes).
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

from faceobfuscator.errors import ConfigError, InputError, PayloadError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import channel_name, dead_channels

__all__ = [
    "check_sent_feature",
    "secure_generator",
    "self_normalise",
    "obfuscate",
    "recover",
    "recovery_exponent",
]

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def secure_generator() -> torch.Generator:
    """A fresh torch generator seeded from the operating system's secure source (63 bits,
    for research code that needs a torch generator). :func:`obfuscate` without a generator
    does not use it: it draws every sign and scale from the operating system directly."""
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


@lru_cache(maxsize=16)
def _byte_table(lo: int, hi: int, parity: bool) -> tuple[np.ndarray, int]:
    """Map a random byte to ``u = lo + byte % n`` (``n = hi - lo + 1 <= 256``), or to its
    sign ``(-1)**u`` as float32 when ``parity``; bytes at or above the largest multiple of
    ``n`` are rejected (``limit``) and drawn again, so every ``u`` is equally likely."""
    n = hi - lo + 1
    limit = 256 - 256 % n
    u = lo + np.arange(256) % n
    table = (1.0 - 2.0 * (u % 2)).astype(np.float32) if parity else u.astype(np.int64)
    table.setflags(write=False)
    return table, limit


ByteSource = Callable[[int], np.ndarray]


def _secure_stream() -> ByteSource:
    """A fresh ChaCha20 keystream (OpenSSL, through ``cryptography``) keyed with 256 bits
    and a 128-bit nonce from the operating system's secure source: cryptographically secure
    bytes at about four times the speed of ``os.urandom``, one key per call."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    cipher = Cipher(algorithms.ChaCha20(os.urandom(32), os.urandom(16)), mode=None)
    encryptor = cipher.encryptor()

    def draw(count: int) -> np.ndarray:
        return np.frombuffer(encryptor.update(bytes(count)), dtype=np.uint8)

    return draw


def _keyed_stream(g: torch.Generator) -> ByteSource:
    """Reproducible bytes for a caller's (seeded) generator: a PCG64 stream keyed by 124
    bits drawn from ``g`` (several times faster than drawing each value through torch)."""
    key = torch.randint(0, 2**62, (2,), generator=g).tolist()
    stream = np.random.Generator(np.random.PCG64(key))

    def draw(count: int) -> np.ndarray:
        # PCG64's raw 64-bit outputs are uniform over all bits, eight bytes each
        words = stream.bit_generator.random_raw(count // 8 + 1)
        return np.asarray(words, dtype=np.uint64).view(np.uint8)[:count]

    return draw


def _uniform(count: int, lo: int, hi: int, source: ByteSource, *, parity: bool) -> np.ndarray:
    """``count`` values exactly uniform on the inclusive ``[lo, hi]`` (or their signs
    ``(-1)**u``), from bytes of ``source`` by rejection sampling."""
    table, limit = _byte_table(lo, hi, parity)
    raw = source(count)
    out = np.take(table, raw)
    todo = np.flatnonzero(raw >= limit)
    while todo.size:
        fresh = source(todo.size)
        out[todo] = np.take(table, fresh)
        todo = todo[fresh >= limit]
    return out


def random_signs(
    shape: tuple[int, ...],
    u_range: tuple[int, int],
    g: torch.Generator | None,
    *,
    source: ByteSource | None = None,
) -> torch.Tensor:
    """Float32 ``(-1)**u`` with ``u`` exactly uniform on the inclusive ``u_range``.

    Without a generator the bytes come from ``source``, by default a fresh
    :func:`_secure_stream` (cryptographically secure); with one (tests, research), from a
    stream keyed by it, so the draw is reproducible.
    """
    lo, hi = u_range
    count = math.prod(shape)
    if g is not None and (hi - lo + 1 > 256 or g.device.type != "cpu"):
        u = torch.randint(lo, hi + 1, shape, generator=g, device=g.device)
        return 1.0 - 2.0 * (u % 2).to(torch.float32)
    if g is None:
        source = source if source is not None else _secure_stream()
        if hi - lo + 1 > 256:
            u = torch.from_numpy(_secure_ints(count, lo, hi, source)).reshape(shape)
            return 1.0 - 2.0 * (u % 2).to(torch.float32)
    else:
        source = _keyed_stream(g)
    return torch.from_numpy(_uniform(count, lo, hi, source, parity=True).reshape(shape))


def _secure_ints(count: int, lo: int, hi: int, source: ByteSource) -> np.ndarray:
    """``count`` int64 exactly uniform on ``[lo, hi]`` (at most 2**32 values) from the
    secure byte ``source``, by rejection sampling on bytes or 32-bit words."""
    n = hi - lo + 1
    if n <= 256:
        return _uniform(count, lo, hi, source, parity=False)
    if n > 2**32:
        raise InputError(f"a range of {n} values is too wide to draw; at most 2**32")
    limit = 2**32 - 2**32 % n
    out = np.empty(count, dtype=np.int64)
    todo = np.arange(count)
    while todo.size:
        words = source(4 * todo.size).view(np.uint32).astype(np.int64)
        keep = words < limit
        out[todo[keep]] = lo + words[keep] % n
        todo = todo[~keep]
    return out


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
    image in a batch) from ``config.u_range`` and ``config.v_range``. Without a generator
    (production) every draw comes from a ChaCha20 keystream keyed from the operating
    system's secure source for this call alone, exactly uniform by rejection sampling; a
    generator (tests, research) makes the draw reproducible.

    Raises:
        ConfigError: ``config`` retains channels that are zero for every face
            (:func:`~faceobfuscator.protocol.frequency.dead_channels`), whose obfuscation
            the server could not recover.
    """
    dead = sorted(set(config.channels) & set(dead_channels(config)))
    if dead:
        names = ", ".join(channel_name(k, config.scale) for k in dead)
        raise ConfigError(
            f"channel(s) {names} are zero for every face after the {config.scale}x "
            f"{config.upsampling} upsampling; obfuscating them leaves nothing the server can "
            "recover (NaN): retain other channels"
        )
    t: torch.Tensor
    t, was_np = _as_tensor(normalised)
    _check_features(t, "obfuscate")
    v_shape = (*t.shape[:-2], 1, 1)
    lo, hi = config.v_range
    if generator is None:
        source = _secure_stream()
        signs = random_signs(tuple(t.shape), config.u_range, None, source=source)
        v = torch.from_numpy(_secure_ints(math.prod(v_shape), lo, hi, source)).reshape(v_shape)
    else:
        signs = random_signs(tuple(t.shape), config.u_range, generator)
        v = torch.randint(lo, hi + 1, v_shape, generator=generator, device=generator.device)
    signs = signs.to(t.device)
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


#: Bounds of what obfuscation of a self-normalised channel can send, per channel: its
#: peak magnitude over its root mean square is scale-free (the random ``b**v`` and signs
#: leave it alone); genuine faces give 3.5 to 14 on 2x112x112 features (LFW and synthetic
#: faces), a channel of equal magnitudes exactly 1. Exact zeros are as rare as an element
#: equal to its channel's mean.
MIN_PEAK_TO_RMS = 1.5
MAX_ZERO_SHARE = 0.5


def check_sent_feature(feature: np.ndarray, config: ProtocolConfig) -> np.ndarray:
    """Refuse a decoded feature ``(K, H, W)`` that no genuine client makes, before anything
    is embedded or stored; return its identity recovery (float32, finite).

    Checks each channel: not all (or mostly) zero, not of one magnitude (constant), and
    recoverable to finite values (a channel of float32 subnormals overflows recovery).

    Raises:
        PayloadError: saying which channel and why, never its values.
    """
    f = np.asarray(feature, dtype=np.float32)
    if f.ndim != 3:
        raise PayloadError(f"expected a feature (K, H, W), got shape {f.shape}")
    mags = np.abs(f).astype(np.float64).reshape(f.shape[0], -1)
    peak = mags.max(axis=1)
    rms = np.sqrt((mags**2).mean(axis=1))
    zeros = (mags == 0).mean(axis=1)
    for k in range(f.shape[0]):
        if zeros[k] > MAX_ZERO_SHARE:
            raise PayloadError(
                f"payload channel {k} is {zeros[k]:.0%} zeros; a protected face has no such "
                "channel. Protect the photo again with the official client"
            )
        if not peak[k] >= MIN_PEAK_TO_RMS * rms[k]:
            raise PayloadError(
                f"payload channel {k} has (nearly) one magnitude everywhere; a protected "
                "face has no such channel. Protect the photo again with the official client"
            )
    recovered = recover(f, config)
    if not np.isfinite(recovered).all():
        raise PayloadError(
            "payload values are too small to recover (identity recovery overflows); "
            "a protected face has no such values. Protect the photo again"
        )
    return recovered
