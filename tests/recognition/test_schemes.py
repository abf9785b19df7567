import pytest
import torch

from faceobfuscator import ConfigError, InputError, ProtocolConfig, normalised_features, recover
from faceobfuscator.protocol.frequency import fast_transform, to_greyscale
from faceobfuscator.protocol.obfuscation import self_normalise
from faceobfuscator.recognition.schemes import Scheme, get_scheme, list_schemes, register_scheme
from tests.helpers import smooth_face_like

PROTOCOL = ProtocolConfig()
CHANNELS = {"arcface": 3, "arcface-fd": 64, "faceobfuscator": 2}


@pytest.fixture
def faces(rng):
    return torch.from_numpy(smooth_face_like(rng, n=3))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_lists_the_built_in_schemes_and_baselines():
    assert set(CHANNELS) | {"instahide", "cloak", "advface", "ppfr-fd"} <= set(list_schemes())
    assert list_schemes() == sorted(list_schemes())


def test_unknown_scheme_lists_known_ones():
    with pytest.raises(ConfigError, match="known: \\['advface', 'arcface', 'arcface-fd'"):
        get_scheme("nope", PROTOCOL)


def test_duplicate_scheme_name_raises():
    with pytest.raises(ConfigError, match="already registered"):
        register_scheme("arcface", lambda p: Scheme(p))


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_shapes_and_channel_counts(name, faces):
    scheme = get_scheme(name, PROTOCOL)
    assert scheme.in_channels == CHANNELS[name]
    sent = scheme.client_features(faces, generator=_gen(0))
    assert sent.shape == (3, CHANNELS[name], 112, 112) and sent.dtype == torch.float32
    assert scheme.server_input(sent).shape == sent.shape
    assert torch.equal(scheme.stored(sent), sent)


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_rejects_non_uint8_or_misshapen_faces(name, faces):
    scheme = get_scheme(name, PROTOCOL)
    with pytest.raises(InputError, match="uint8 faces"):
        scheme.encode(faces.float())
    with pytest.raises(InputError, match="uint8 faces"):
        scheme.encode(faces[:, :100])


def test_arcface_is_rgb_in_minus_one_one(faces):
    x = get_scheme("arcface", PROTOCOL).encode(faces)
    expected = faces.permute(0, 3, 1, 2).double() / 127.5 - 1.0
    torch.testing.assert_close(x.double(), expected, atol=1e-6, rtol=0)


def test_arcface_fd_is_all_channels_self_normalised(faces):
    x = get_scheme("arcface-fd", PROTOCOL).encode(faces)
    grey = to_greyscale(faces, PROTOCOL)
    ref = self_normalise(fast_transform(grey, PROTOCOL, channels=tuple(range(64))), PROTOCOL)
    torch.testing.assert_close(x, ref)
    # the retained FaceObfuscator channels are among them, identically normalised
    torch.testing.assert_close(x[:, [1, 8]], normalised_features(faces, PROTOCOL))
    # low AC channels carry far more than beta of variance, so they come out at unit variance
    var = x[:, [1, 8]].double().var(dim=(-2, -1))
    torch.testing.assert_close(var, torch.ones_like(var), atol=1e-2, rtol=0)


def test_faceobfuscator_fresh_draws_and_recovery(faces):
    scheme = get_scheme("faceobfuscator", PROTOCOL)
    a = scheme.client_features(faces, generator=_gen(1))
    b = scheme.client_features(faces, generator=_gen(2))
    assert not torch.equal(a, b)
    # recovery removes the random scale: magnitudes agree, only element signs differ
    ra, rb = scheme.server_input(a), scheme.server_input(b)
    clean = normalised_features(faces, PROTOCOL)
    ratio_a = ra.abs() / clean.abs().clamp_min(1e-30)
    per_channel = ratio_a.flatten(2)
    assert torch.allclose(per_channel, per_channel[..., :1].expand_as(per_channel), rtol=1e-5)
    torch.testing.assert_close(ra.abs().amax(dim=(-2, -1)), rb.abs().amax(dim=(-2, -1)))
    torch.testing.assert_close(recover(a, PROTOCOL), ra)
