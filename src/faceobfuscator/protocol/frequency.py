"""Frequency-domain visual information deletion.

The paper's transform upsamples the greyscale face ``scale`` times (bilinear), cuts it into
``scale x scale`` blocks and takes an orthonormal DCT-II of each block; coefficient ``(i, j)``
of every block forms channel ``k = scale * i + j``. Upsampling and the block DCT are both
separable linear maps, so channel ``(i, j)`` equals ``L_i @ X @ L_j.T`` for a small
``image_size x image_size`` operator ``L_i``; the fast path uses that and never builds the
upsampled image. Shapes: images ``(..., H, W)``, channels ``(..., K, H, W)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig

__all__ = [
    "dct_matrix",
    "upsample_matrix",
    "channel_operators",
    "channel_name",
    "dead_channels",
    "to_greyscale",
    "reference_transform",
    "fast_transform",
    "inverse_transform",
]


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``C`` (``n x n``): ``coeffs = C @ x``."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    c = np.cos(math.pi * (2 * x + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    c[0] /= math.sqrt(2.0)
    return c


def upsample_matrix(size: int, scale: int, convention: str) -> np.ndarray:
    """The ``(size*scale, size)`` matrix of 1-D bilinear upsampling, as torch computes it."""
    eye = torch.eye(size, dtype=torch.float64)[:, None, :]  # (size, 1, size): impulses
    up = F.interpolate(
        eye, scale_factor=scale, mode="linear", align_corners=(convention == "align_corners")
    )
    return up[:, 0, :].T.numpy().copy()  # column p = response to an impulse at p


@lru_cache(maxsize=16)
def _torch_operators(size: int, scale: int, convention: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(_operators(size, scale, convention), dtype=dtype)


@lru_cache(maxsize=16)
def _operators(size: int, scale: int, convention: str) -> np.ndarray:
    up = upsample_matrix(size, scale, convention)  # (size*scale, size)
    c = dct_matrix(scale)
    # L_i[p, :] = sum_x C[i, x] * up[scale*p + x, :]
    blocks = up.reshape(size, scale, size)  # (p, x, q)
    ops = np.einsum("ix,pxq->ipq", c, blocks)
    ops.setflags(write=False)
    return ops


@dataclass(frozen=True)
class _Stencil:
    """``L`` as a short shift-invariant stencil on its interior rows ``lo..hi`` plus a few
    dense edge rows: ``L[p, p + d] = coeffs[d]`` for interior ``p``."""

    offsets: tuple[int, ...]
    coeffs: tuple[float, ...]
    lo: int
    hi: int
    edge_rows: tuple[int, ...]
    edge: torch.Tensor  # (len(edge_rows), S)


@lru_cache(maxsize=64)
def _stencil(size: int, scale: int, convention: str, i: int, dtype: torch.dtype) -> _Stencil | None:
    op = _operators(size, scale, convention)[i]
    tol = 1e-12 * float(np.abs(op).max())
    rows, cols = np.nonzero(np.abs(op) > tol)
    w = int(np.abs(cols - rows).max())
    mid = size // 2
    offsets = tuple(d for d in range(-w, w + 1) if abs(op[mid, mid + d]) > tol)
    coeffs = tuple(float(op[mid, mid + d]) for d in offsets)
    lo, hi = w, size - 1 - w
    odd = [
        p
        for p in range(lo, hi + 1)
        if np.abs(op[p, p - w : p + w + 1] - _row(coeffs, offsets, w)).max() > tol
    ]
    if len(odd) > 4:  # not shift-invariant (align_corners): the dense path is right
        return None
    edge_rows = tuple(sorted(set(range(lo)) | set(range(hi + 1, size)) | set(odd)))
    edge = torch.tensor(op[list(edge_rows)], dtype=dtype)
    return _Stencil(offsets, coeffs, lo, hi, edge_rows, edge)


def _row(coeffs: tuple[float, ...], offsets: tuple[int, ...], w: int) -> np.ndarray:
    row = np.zeros(2 * w + 1)
    for d, c in zip(offsets, coeffs, strict=True):
        row[d + w] = c
    return row


def _apply(x: torch.Tensor, st: _Stencil, axis: int) -> torch.Tensor:
    """``L x`` along ``axis`` (-2: rows, ``L @ x``; -1: columns, ``x @ L.T``)."""
    n = st.hi - st.lo + 1
    out = torch.empty_like(x)
    inner = out.narrow(axis, st.lo, n)
    torch.mul(x.narrow(axis, st.lo + st.offsets[0], n), st.coeffs[0], out=inner)
    for d, c in zip(st.offsets[1:], st.coeffs[1:], strict=True):
        inner.add_(x.narrow(axis, st.lo + d, n), alpha=c)
    edge = st.edge.to(device=x.device, dtype=x.dtype)
    rows = list(st.edge_rows)
    if axis == -2:
        out[..., rows, :] = torch.matmul(edge, x)
    else:
        out[..., rows] = torch.matmul(x, edge.T)
    return out


def channel_operators(config: ProtocolConfig) -> np.ndarray:
    """``(scale, size, size)`` float64 operators ``L_i`` with channel ``(i, j) = L_i X L_j^T``."""
    return _operators(config.image_size, config.scale, config.upsampling)


def channel_name(k: int, scale: int = 8) -> str:
    """``DC`` for channel 0, else ``ACij`` (``i`` vertical, ``j`` horizontal frequency).

    Raises:
        InputError: ``k`` is not a channel of a ``scale`` x ``scale`` block DCT.
    """
    if not 0 <= k < scale * scale:
        raise InputError(f"channel {k} is outside [0, {scale * scale - 1}]")
    return "DC" if k == 0 else f"AC{k // scale}{k % scale}"


def dead_channels(config: ProtocolConfig) -> tuple[int, ...]:
    """Channels ``k = scale * i + j`` that are zero for every face: row or column ``i``
    (``j``) whose operator ``L_i`` is zero up to rounding (at most 1e-9 of the largest
    entry). With the bilinear upsampling by the block size the 8x8 DCT's frequency 4 sees
    a piecewise-linear signal symmetric about each block's centre and is exactly zero, so
    the 15 channels of row or column 4 are dead for ``half_pixel`` (the default).
    Self-normalised they stay near zero, and obfuscating them makes identity recovery
    return NaN (:func:`~faceobfuscator.protocol.obfuscation.obfuscate` refuses them).

    Returns:
        the dead channel indices, ascending.
    """
    return _dead_channels(config.image_size, config.scale, config.upsampling)


@lru_cache(maxsize=16)
def _dead_channels(size: int, scale: int, convention: str) -> tuple[int, ...]:
    ops = np.abs(_operators(size, scale, convention))
    dead_rows = {i for i in range(scale) if ops[i].max() <= 1e-9 * ops.max()}
    return tuple(i * scale + j for i in range(scale) for j in range(scale) if {i, j} & dead_rows)


def to_greyscale(image: np.ndarray | torch.Tensor, config: ProtocolConfig) -> torch.Tensor:
    """RGB ``uint8`` ``(..., H, W, 3)`` (or greyscale ``(..., H, W)``) to float32 luma in
    ``config.pixel_range``."""
    t = torch.as_tensor(image)
    if t.dtype != torch.uint8:
        raise InputError(f"expected a uint8 image, got dtype {t.dtype}; pass pixel values 0..255")
    lo, hi = config.pixel_range
    step = (hi - lo) / 255.0
    if t.ndim >= 3 and t.shape[-1] == 3:
        w = torch.tensor(config.luma, dtype=torch.float32, device=t.device) * step
        return torch.matmul(t.to(torch.float32), w) + lo
    return t.to(torch.float32) * step + lo


def _check_face(x: torch.Tensor, config: ProtocolConfig) -> torch.Tensor:
    s = config.image_size
    if x.ndim < 2 or tuple(x.shape[-2:]) != (s, s):
        raise InputError(f"expected greyscale faces of shape (..., {s}, {s}), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise InputError(f"expected a float tensor from to_greyscale, got {x.dtype}")
    return x


def reference_transform(grey: torch.Tensor, config: ProtocolConfig) -> torch.Tensor:
    """All ``scale**2`` channels, exactly as the paper describes, in float64.

    ``grey``: ``(..., S, S)`` -> ``(..., scale**2, S, S)``.
    """
    x = _check_face(torch.as_tensor(grey), config).to(torch.float64)
    lead = x.shape[:-2]
    s, n = config.image_size, config.scale
    up = F.interpolate(
        x.reshape(-1, 1, s, s),
        scale_factor=n,
        mode="bilinear",
        align_corners=(config.upsampling == "align_corners"),
    )[:, 0]
    blocks = up.reshape(-1, s, n, s, n).permute(0, 1, 3, 2, 4)  # (B, p, q, x, y)
    c = torch.from_numpy(dct_matrix(n))
    coeffs = torch.einsum("ix,jy,bpqxy->bijpq", c, c, blocks)
    return coeffs.reshape(*lead, n * n, s, s)


def fast_transform(
    grey: torch.Tensor, config: ProtocolConfig, *, channels: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Only the requested channels (default ``config.channels``), without upsampling.

    ``grey``: ``(..., S, S)`` float -> ``(..., K, S, S)`` in the input's float dtype.
    """
    x = _check_face(torch.as_tensor(grey), config)
    chans = config.channels if channels is None else tuple(channels)
    n, s = config.scale, config.image_size
    if any(not 0 <= k < n * n for k in chans):
        raise InputError(f"channels {list(chans)} must lie in [0, {n * n - 1}]")
    lead = x.shape[:-2]
    stencils = {
        i: _stencil(s, n, config.upsampling, i, x.dtype)
        for i in {k // n for k in chans} | {k % n for k in chans}
    }
    ready = {i: st for i, st in stencils.items() if st is not None}
    if len(ready) == len(stencils):
        # shift-invariant operators (half-pixel): a few multiply-adds per element
        flat_x = x.reshape(-1, s, s)
        by_col = {j: _apply(flat_x, ready[j], -1) for j in {k % n for k in chans}}  # X L_j^T
        planes = [_apply(by_col[k % n], ready[k // n], -2) for k in chans]  # L_i X L_j^T
        return torch.stack(planes, dim=1).reshape(*lead, len(chans), s, s)
    ops = _torch_operators(s, n, config.upsampling, x.dtype).to(x.device)
    # X L_j^T for every needed j in one GEMM over all rows of the batch
    cols = sorted({k % n for k in chans})
    right = torch.cat([ops[j].T for j in cols], dim=1)  # (S, S * len(cols))
    xr = torch.matmul(x.reshape(-1, s), right).reshape(-1, s, len(cols), s)
    out = torch.empty(*lead, len(chans), s, s, dtype=x.dtype, device=x.device)
    flat = out.reshape(-1, len(chans), s, s)
    for c, k in enumerate(chans):
        flat[:, c] = torch.matmul(ops[k // n], xr[:, :, cols.index(k % n)])  # L_i (X L_j^T)
    return out


def inverse_transform(
    coeffs: torch.Tensor, config: ProtocolConfig, *, channels: tuple[int, ...] | None = None
) -> torch.Tensor:
    """Least-squares face from DCT channels: block IDCT, then the pseudo-inverse of the
    upsampling. Missing channels count as zero, so a subset gives the best face that subset
    alone explains. ``(..., K, S, S)`` -> ``(..., S, S)`` float64."""
    chans = tuple(range(config.scale**2)) if channels is None else tuple(channels)
    c = torch.as_tensor(coeffs).to(torch.float64)
    s, n = config.image_size, config.scale
    if c.ndim < 3 or tuple(c.shape[-3:]) != (len(chans), s, s):
        raise InputError(
            f"expected coefficients (..., {len(chans)}, {s}, {s}), got {tuple(c.shape)}"
        )
    lead = c.shape[:-3]
    full = torch.zeros(*lead, n * n, s, s, dtype=torch.float64)
    full[..., list(chans), :, :] = c
    up = torch.from_numpy(upsample_matrix(s, n, config.upsampling))
    pinv = torch.linalg.pinv(up)  # (S, S*n)
    dct = torch.from_numpy(dct_matrix(n))
    blocks = torch.einsum("ix,jy,...ijpq->...pqxy", dct, dct, full.reshape(*lead, n, n, s, s))
    big = blocks.permute(*range(len(lead)), -4, -2, -3, -1).reshape(*lead, s * n, s * n)
    return pinv @ big @ pinv.T
