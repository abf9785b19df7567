import numpy as np
import pytest
import torch

from faceobfuscator import (
    InputError,
    ProtocolConfig,
    fast_transform,
    inverse_transform,
    reference_transform,
    to_greyscale,
)
from faceobfuscator.protocol.frequency import channel_operators, dct_matrix, upsample_matrix
from tests.helpers import smooth_face_like


def test_dct_matrix_is_orthonormal():
    c = dct_matrix(8)
    np.testing.assert_allclose(c @ c.T, np.eye(8), atol=1e-12)
    assert c[0, 0] == pytest.approx(1 / np.sqrt(8))


@pytest.mark.parametrize("convention", ["half_pixel", "align_corners"])
def test_upsample_matrix_matches_torch_bilinear(convention, rng):
    u = torch.from_numpy(upsample_matrix(112, 8, convention))
    x = torch.from_numpy(rng.normal(size=(112, 112)))
    want = torch.nn.functional.interpolate(
        x[None, None], scale_factor=8, mode="bilinear", align_corners=convention == "align_corners"
    )[0, 0]
    torch.testing.assert_close(u @ x @ u.T, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("convention", ["half_pixel", "align_corners"])
def test_fast_path_equals_reference_on_every_channel(convention, rng):
    config = ProtocolConfig(upsampling=convention)
    grey = to_greyscale(smooth_face_like(rng, 3), config).double()
    ref = reference_transform(grey, config)
    fast = fast_transform(grey, config, channels=tuple(range(64)))
    assert ref.shape == fast.shape == (3, 64, 112, 112)
    peak = ref.abs().amax(dim=(-2, -1))
    err = (ref - fast).abs().amax(dim=(-2, -1))
    # Channels that vanish in exact arithmetic (e.g. i or j = 4 for half-pixel) hold only
    # float64 rounding (~1e-16) in the reference; measure them against the image's scale.
    floor = 1e-9 * ref.abs().amax()
    assert bool((err <= 1e-5 * torch.maximum(peak, floor)).all())


def test_float32_fast_path_matches_reference(rng):
    config = ProtocolConfig()
    grey = to_greyscale(smooth_face_like(rng, 2), config)
    ref = reference_transform(grey, config)[:, list(config.channels)]
    fast = fast_transform(grey, config)
    assert fast.dtype == torch.float32
    peak = ref.abs().amax(dim=(-2, -1))
    assert bool(((ref - fast.double()).abs().amax(dim=(-2, -1)) <= 1e-5 * peak).all())


def test_retained_channels_are_a_gradient_filter():
    # The brief's measurement: AC01 and AC10 of the half-pixel upsampled image are a 3x3
    # filter, [0.142, 0.854, 0.142] across and [+1, 0, -1] along (up to scale).
    ops = channel_operators(ProtocolConfig())
    across, along = ops[0][50, 49:52], ops[1][50, 49:52]
    np.testing.assert_allclose(
        across / across.sum() * (0.142 * 2 + 0.854), [0.142, 0.854, 0.142], atol=2e-3
    )
    np.testing.assert_allclose(along / along[0], [1, 0, -1], atol=1e-12)
    assert (np.abs(ops[0][50]) > 1e-12).sum() == 3 and (np.abs(ops[1][50]) > 1e-12).sum() == 2


def test_inverse_of_all_channels_recovers_the_face(rng):
    config = ProtocolConfig()
    grey = to_greyscale(smooth_face_like(rng, 2), config).double()
    back = inverse_transform(reference_transform(grey, config), config)
    torch.testing.assert_close(back, grey, atol=1e-9, rtol=0)


def test_greyscale_uses_bt601_luma_and_range():
    config = ProtocolConfig()
    img = np.zeros((1, 112, 112, 3), np.uint8)
    img[..., 0] = 255
    g = to_greyscale(img, config)
    assert g.shape == (1, 112, 112)
    assert float(g[0, 0, 0]) == pytest.approx(0.299 * 2 - 1, abs=1e-6)
    white = to_greyscale(np.full((112, 112, 3), 255, np.uint8), config)
    assert float(white.max()) == pytest.approx(1.0, abs=1e-6)


def test_bad_inputs_raise_clear_errors():
    config = ProtocolConfig()
    with pytest.raises(InputError, match="uint8"):
        to_greyscale(np.zeros((112, 112, 3), np.float32), config)
    with pytest.raises(InputError, match=r"\(\.\.\., 112, 112\)"):
        fast_transform(torch.zeros(2, 100, 100), config)
    with pytest.raises(InputError, match="channels"):
        fast_transform(torch.zeros(112, 112), config, channels=(64,))


@pytest.mark.parametrize("upsampling", ["half_pixel", "align_corners"])
def test_dead_channels_are_exactly_those_zero_for_random_faces(upsampling):
    from faceobfuscator.protocol.frequency import dead_channels, fast_transform, to_greyscale

    config = ProtocolConfig(upsampling=upsampling)
    g = torch.Generator().manual_seed(3)
    faces = torch.randint(0, 256, (3, 112, 112, 3), generator=g, dtype=torch.uint8)
    every = tuple(range(64))
    spread = fast_transform(to_greyscale(faces, config), config, channels=every).double()
    spread = spread.std(dim=(-2, -1)).amax(dim=0)
    zero = [k for k in every if spread[k] <= 1e-6 * spread.max()]
    assert list(dead_channels(config)) == zero
    if upsampling == "half_pixel":  # frequency 4 of a piecewise-linear, centre-symmetric block
        assert zero == [k for k in every if 4 in (k // 8, k % 8)]


def test_obfuscating_a_dead_channel_is_refused_before_any_nan():
    from faceobfuscator.errors import ConfigError
    from faceobfuscator.protocol.obfuscation import obfuscate

    config = ProtocolConfig(channels=(1, 4, 12))
    with pytest.raises(ConfigError, match=r"AC04, AC14 are zero for every face.*retain other"):
        obfuscate(np.zeros((3, 112, 112), dtype=np.float32), config)
    live = ProtocolConfig(channels=(1, 8))
    assert obfuscate(np.ones((2, 112, 112), dtype=np.float32), live).shape == (2, 112, 112)
