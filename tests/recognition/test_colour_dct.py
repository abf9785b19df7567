"""The colour block DCT of the frequency-domain baselines: JPEG YCbCr, the protocol's own
transform per plane, and the dense differentiable operators with their inverse."""

from __future__ import annotations

import pytest
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import fast_transform, inverse_transform
from faceobfuscator.recognition.colour_dct import (
    ColourDCT,
    colour_channels,
    rgb_from_ycbcr,
    ycbcr_planes,
)
from tests.helpers import smooth_face_like

P = ProtocolConfig(image_size=24)


@pytest.fixture
def faces(rng):
    return torch.from_numpy(smooth_face_like(rng, n=2, size=24))


def test_ycbcr_is_jfif_level_shifted(faces):
    planes = ycbcr_planes(faces, P)
    r, g, b = (faces[..., c].double() for c in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b - 128
    torch.testing.assert_close(planes[:, 0].double(), y, atol=1e-4, rtol=0)
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b
    torch.testing.assert_close(planes[:, 1].double(), cb, atol=1e-4, rtol=0)
    # grey pixels have no chroma
    grey = torch.full((1, 24, 24, 3), 200, dtype=torch.uint8)
    torch.testing.assert_close(ycbcr_planes(grey, P)[:, 1:], torch.zeros(1, 2, 24, 24))
    back = rgb_from_ycbcr(planes)
    torch.testing.assert_close(back, faces.permute(0, 3, 1, 2).float(), atol=1e-3, rtol=0)


def test_colour_channels_are_the_protocol_transform_per_plane(faces):
    out = colour_channels(faces, P, (0, 9, 63))
    assert out.shape == (2, 9, 24, 24) and out.dtype == torch.float32
    planes = ycbcr_planes(faces, P)
    for c in range(3):
        ref = fast_transform(planes[:, c], P, channels=(0, 9, 63))
        torch.testing.assert_close(out[:, 3 * c : 3 * c + 3], ref)
    # DC of an 8x block of the 8x upsampled face is 8 times the local level
    assert abs(float(out[:, 0].mean() / planes[:, 0].mean()) - 8.0) < 0.05


@pytest.mark.parametrize("upsampling", ["half_pixel", "align_corners"])
def test_dense_operators_match_the_protocol_and_invert(faces, upsampling):
    p = ProtocolConfig(image_size=24, upsampling=upsampling)
    dct = ColourDCT(p)
    planes = ycbcr_planes(faces, p)
    coeffs = dct(planes)
    assert coeffs.shape == (2, 3, 64, 24, 24)
    ref = fast_transform(planes, p, channels=tuple(range(64)))
    torch.testing.assert_close(coeffs, ref, atol=1e-3, rtol=1e-4)
    back = dct.inverse(coeffs)
    torch.testing.assert_close(back, planes, atol=1e-3, rtol=0)
    # a subset decodes like the protocol's least-squares inverse
    part = coeffs.clone()
    part[:, :, :10] = 0
    expected = inverse_transform(part[0, 1].double(), p)
    torch.testing.assert_close(dct.inverse(part)[0, 1].double(), expected, atol=1e-3, rtol=0)


def test_dense_operators_are_differentiable(faces):
    dct = ColourDCT(P)
    planes = ycbcr_planes(faces, P).requires_grad_(True)
    dct.inverse(dct(planes) * 2).sum().backward()
    assert planes.grad is not None
    torch.testing.assert_close(planes.grad, torch.full_like(planes, 2.0), atol=1e-3, rtol=0)


def test_bad_inputs_raise(faces):
    with pytest.raises(InputError, match="uint8 faces"):
        colour_channels(faces.float(), P, (1,))
    with pytest.raises(InputError, match="coefficients"):
        ColourDCT(P).inverse(torch.zeros(1, 3, 10, 24, 24))
    with pytest.raises(InputError, match="planes"):
        ColourDCT(P)(torch.zeros(3, 24, 24))


def test_float_rgb_gives_the_same_planes(faces):
    from faceobfuscator.recognition.colour_dct import ycbcr_from_rgb

    rgb = faces.permute(0, 3, 1, 2).float()
    torch.testing.assert_close(ycbcr_from_rgb(rgb), ycbcr_planes(faces, P))
    with pytest.raises(InputError, match="float RGB"):
        ycbcr_from_rgb(faces.permute(0, 3, 1, 2))
