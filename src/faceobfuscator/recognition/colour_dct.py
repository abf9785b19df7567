"""The colour block DCT shared by the frequency-domain baselines (DCTDP, DuetFace,
PartialFace, MinusFace; Tencent/TFace ``recognition/tasks/*``).

The authors' pipeline (TFace ``partialface/utils.py:dct_transform``, the same in DCTDP and
DuetFace): RGB in [0, 255], 8x bilinear upsampling, JPEG (JFIF, full-range) YCbCr, minus
128, an orthonormal 8x8 DCT of every block; coefficient ``k`` of every block of colour ``c``
forms channel ``64 * c + k`` at the face's own resolution. Here the transform of each colour
plane is the project's :func:`~faceobfuscator.protocol.frequency.fast_transform` (one DCT in
the code base), so the upsampling factor is ``protocol.scale`` (8, as the authors) and the
bilinear convention is ``protocol.upsampling``: the authors use ``align_corners=True``
(``"align_corners"``), the project's default is ``"half_pixel"``; a baseline trained under
the default protocol therefore differs from the authors' only in where the bilinear samples
sit. Values stay in the authors' units (8-bit levels, shifted by -128), so a noise scale or a
privacy budget means what it means in the papers.

:class:`ColourDCT` holds the same transform and its least-squares inverse as dense
operators, which autograd differentiates (MinusFace trains through them).
Shapes: faces uint8 ``(N, S, S, 3)``; planes ``(N, 3, S, S)`` (Y, Cb, Cr); coefficients
``(N, 3, K, S, S)`` or, flattened colour-major, ``(N, 3 * K, S, S)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import (
    channel_operators,
    dct_matrix,
    fast_transform,
    upsample_matrix,
)

__all__ = [
    "LEVEL_SHIFT",
    "RGB_TO_YCBCR",
    "ColourDCT",
    "colour_channels",
    "rgb_from_ycbcr",
    "ycbcr_from_rgb",
    "ycbcr_planes",
]

#: JPEG (JFIF) full-range RGB -> YCbCr rows (Y, Cb, Cr); ITU-T T.871 section 7
RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)
_CHUNK = 16
#: subtracted from Y (and Cb, Cr are centred on 128) before the DCT, as in JPEG and TFace
LEVEL_SHIFT = 128.0


def ycbcr_planes(faces: torch.Tensor, protocol: ProtocolConfig) -> torch.Tensor:
    """Level-shifted YCbCr planes ``(N, 3, S, S)`` float32 (8-bit units, each in about
    [-128, 127]) of uint8 faces ``(N, S, S, 3)``."""
    # imported here: schemes imports the baselines, which import this module
    from faceobfuscator.recognition.schemes import check_faces

    x = check_faces(faces, protocol).to(torch.float32)
    return ycbcr_from_rgb(x.permute(0, 3, 1, 2))


def ycbcr_from_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """Level-shifted YCbCr ``(N, 3, S, S)`` of float RGB ``(N, 3, S, S)`` in 8-bit units
    (no rounding): :func:`ycbcr_planes` for images that are not uint8."""
    if rgb.ndim != 4 or rgb.shape[1] != 3 or not torch.is_floating_point(rgb):
        raise InputError(f"expected float RGB (N, 3, S, S), got {tuple(rgb.shape)} {rgb.dtype}")
    m = torch.tensor(RGB_TO_YCBCR, dtype=rgb.dtype, device=rgb.device)
    # Cb and Cr carry +128 in JFIF; with the level shift they end centred on 0 like Y - 128
    ycc = torch.einsum("nchw,kc->nkhw", rgb, m)
    ycc[:, 0] -= LEVEL_SHIFT
    return ycc.contiguous()


def rgb_from_ycbcr(planes: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`ycbcr_planes` without rounding: level-shifted YCbCr
    ``(N, 3, S, S)`` -> RGB ``(N, 3, S, S)`` in 8-bit units (not clipped)."""
    if planes.ndim != 4 or planes.shape[1] != 3:
        raise InputError(f"expected YCbCr planes (N, 3, S, S), got {tuple(planes.shape)}")
    inv = torch.linalg.inv(torch.tensor(RGB_TO_YCBCR, dtype=torch.float64))
    y = planes.clone()
    y[:, 0] = y[:, 0] + LEVEL_SHIFT
    return torch.einsum("ck,nkhw->nchw", inv.to(planes.dtype).to(planes.device), y)


def colour_channels(
    faces: torch.Tensor, protocol: ProtocolConfig, channels: tuple[int, ...]
) -> torch.Tensor:
    """DCT channels ``channels`` (``k = scale * i + j``) of each colour plane, colour-major:
    uint8 faces ``(N, S, S, 3)`` -> ``(N, 3 * len(channels), S, S)`` float32, channel
    ``len(channels) * c + m`` holding frequency ``channels[m]`` of plane ``c`` (Y, Cb, Cr)."""
    check = ycbcr_planes(faces[:0], protocol)  # the input check, on no faces
    n, s = faces.shape[0], protocol.image_size
    out = torch.empty(n, 3, len(channels), s, s, dtype=torch.float32, device=check.device)
    # a few faces at a time: the transform's intermediates would double a large batch
    for i in range(0, n, _CHUNK):
        planes = ycbcr_planes(faces[i : i + _CHUNK], protocol)
        out[i : i + _CHUNK] = fast_transform(planes, protocol, channels=channels)
    return out.reshape(n, -1, s, s)


class ColourDCT(nn.Module):
    """All ``scale**2`` channels of each plane and the least-squares inverse as dense
    matrix products, differentiable and batched.

    ``forward``: planes ``(N, P, S, S)`` -> coefficients ``(N, P, scale**2, S, S)``, equal to
    :func:`~faceobfuscator.protocol.frequency.fast_transform` of every channel.
    ``inverse``: coefficients ``(N, P, scale**2, S, S)`` -> planes ``(N, P, S, S)``, equal to
    :func:`~faceobfuscator.protocol.frequency.inverse_transform`: block IDCT of the upsampled
    image, then the pseudo-inverse of the upsampling, factored as
    ``X = sum_ij R_i C_ij R_j^T`` with ``R_i = pinv(U) E_i`` (``E_i`` scatters row ``i`` of
    the DCT matrix into every block), so no ``scale * S`` image is ever built.
    The operators are buffers (not saved: they follow from the protocol).
    """

    ops: torch.Tensor
    inv: torch.Tensor

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__()
        n, s = protocol.scale, protocol.image_size
        ops = np.asarray(channel_operators(protocol))  # (n, S, S): L_i
        up = upsample_matrix(s, n, protocol.upsampling)  # (S*n, S)
        pinv = np.linalg.pinv(up)  # (S, S*n)
        d = dct_matrix(n)
        # E_i[n*p + x, p] = D[i, x]; R_i = pinv @ E_i  -> R_i[a, p] = pinv[a, n*p : n*p + n] @ D[i]
        inv = np.einsum("apx,ix->iap", pinv.reshape(s, s, n), d)
        self.n = n
        self.register_buffer("ops", torch.tensor(ops, dtype=torch.float32), persistent=False)
        self.register_buffer("inv", torch.tensor(inv, dtype=torch.float32), persistent=False)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        if planes.ndim != 4 or not torch.is_floating_point(planes):
            raise InputError(f"expected float planes (N, P, S, S), got {tuple(planes.shape)}")
        ops = self.ops.to(planes.dtype)
        right = planes @ ops.transpose(-1, -2)[:, None, None]  # (n_j, N, P, S, S): X L_j^T
        out = ops[:, None, None, None] @ right[None]  # (n_i, n_j, N, P, S, S)
        n = self.n
        return out.permute(2, 3, 0, 1, 4, 5).reshape(*planes.shape[:2], n * n, *planes.shape[2:])

    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        n = self.n
        if coeffs.ndim != 5 or coeffs.shape[2] != n * n:
            raise InputError(
                f"expected coefficients (N, P, {n * n}, S, S), got {tuple(coeffs.shape)}"
            )
        r = self.inv.to(coeffs.dtype)  # (n, S, S)
        lead, s = coeffs.shape[:2], coeffs.shape[-1]
        # [C_i0 ... C_i(n-1)] (S x nS) @ [R_0^T; ...; R_(n-1)^T] (nS x S) = sum_j C_ij R_j^T
        rows = coeffs.unflatten(2, (n, n)).transpose(-2, -3).reshape(*lead, n, s, n * s)
        inner = rows @ r.transpose(-1, -2).reshape(n * s, s)
        return (r @ inner).sum(dim=2)  # sum_i R_i (sum_j C_ij R_j^T)
