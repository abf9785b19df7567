import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from faceobfuscator import (
    InputError,
    ProtocolConfig,
    normalised_features,
    obfuscate,
    protect_faces,
    recover,
    self_normalise,
)
from faceobfuscator.errors import PayloadError
from faceobfuscator.protocol import obfuscation as obfuscation_module
from faceobfuscator.protocol.config import safe_exponent_range
from faceobfuscator.protocol.obfuscation import (
    check_sent_feature,
    random_signs,
    recovery_exponent,
)
from tests.helpers import smooth_face_like

FAST = settings(max_examples=25, deadline=None)


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_self_normalise_uses_bessel_corrected_variance(rng):
    config = ProtocolConfig(beta=1e-5)
    f = torch.from_numpy(rng.normal(3.0, 2.0, (2, 2, 112, 112)))
    a = self_normalise(f, config)
    mean = f.mean(dim=(-2, -1), keepdim=True)
    var = f.var(dim=(-2, -1), keepdim=True, unbiased=True)
    torch.testing.assert_close(a, (f - mean) / torch.sqrt(var + 1e-5), atol=1e-9, rtol=1e-9)
    # and the bound the config's range check relies on: |a| <= sqrt(n - 1)
    assert float(a.abs().max()) <= math.sqrt(112 * 112 - 1)


def test_numpy_in_numpy_out(rng):
    config = ProtocolConfig()
    a = self_normalise(rng.normal(size=(2, 112, 112)).astype(np.float32), config)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    e = obfuscate(a, config, generator=_gen(0))
    d = recover(e, config)
    assert isinstance(e, np.ndarray) and isinstance(d, np.ndarray)
    np.testing.assert_array_equal(
        np.abs(d), np.abs(recover(obfuscate(a, config, generator=_gen(1)), config))
    )


def test_obfuscation_signs_and_scales(rng):
    config = ProtocolConfig()
    a = torch.from_numpy(rng.normal(size=(4, 2, 112, 112)).astype(np.float32))
    e = obfuscate(a, config, generator=_gen(7))
    ratio = (e / a).double()
    # every channel is a * (+-1) * 2**v with one integer v per channel
    scales = ratio.abs()
    v = torch.log2(scales)
    assert torch.equal(v, v.round())
    assert bool((scales == scales[..., :1, :1]).all())
    assert int(v.min()) >= -60 and int(v.max()) <= 60
    # both signs occur in about equal numbers
    share = float((ratio > 0).double().mean())
    assert 0.48 < share < 0.53


def test_default_generator_is_fresh_each_call(rng):
    config = ProtocolConfig()
    a = torch.from_numpy(rng.normal(size=(2, 112, 112)).astype(np.float32))
    e1, e2 = obfuscate(a, config), obfuscate(a, config)
    assert not torch.equal(e1, e2)
    # and a batch never reuses one draw across images
    batch = obfuscate(torch.stack([a, a]), config)
    assert not torch.equal(batch[0], batch[1])


def test_sign_distribution_follows_u_range():
    # u uniform on [-60, 60]: 61 even values of 121, so P(+1) = 61/121
    signs = random_signs((400_000,), (-60, 60), _gen(3))
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    assert float((signs > 0).double().mean()) == pytest.approx(61 / 121, abs=0.003)
    # u in [1, 2]: odd or even with equal probability; u in [1, 1]: always -1
    assert bool((random_signs((1000,), (1, 1), _gen(4)) == -1).all())


@FAST
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 3))
def test_b2_recovery_is_bit_identical(seed, n):
    config = ProtocolConfig()
    faces = smooth_face_like(np.random.default_rng(seed), n)
    a = normalised_features(faces, config)
    d1 = recover(obfuscate(a, config, generator=_gen(seed)), config)
    d2 = recover(obfuscate(a, config, generator=_gen(seed + 1)), config)
    assert torch.equal(d1.abs(), d2.abs())
    # r = floor(-log2 max|e|) puts every channel's largest magnitude in (1/2, 1]
    peak = d1.abs().amax(dim=(-2, -1))
    assert bool(((peak > 0.5) & (peak <= 1.0)).all())


@FAST
@given(
    seed=st.integers(0, 2**31 - 1),
    b=st.sampled_from([1.8, 3.0, 10.0, 100.0]),
    width=st.integers(0, 15),
)
def test_other_bases_recover_within_1e6(seed, b, width):
    config = ProtocolConfig(b=b, v_range=(-width, width))
    a = normalised_features(smooth_face_like(np.random.default_rng(seed), 2), config)
    d1 = recover(obfuscate(a, config, generator=_gen(seed)), config).abs()
    d2 = recover(obfuscate(a, config, generator=_gen(seed + 1)), config).abs()
    rel = (d1 - d2).abs().amax(dim=(-2, -1)) / d1.amax(dim=(-2, -1))
    assert float(rel.max()) <= 1e-6


@FAST
@given(b=st.sampled_from([2.0, 4.0, 1.8, 10.0]), seed=st.integers(0, 10**6))
def test_recovery_exponent_is_exact_floor(b, seed):
    config = ProtocolConfig(
        b=b, v_range=safe_exponent_range(b, 112 * 112) if b != 2.0 else (-60, 60)
    )
    rng = np.random.default_rng(seed)
    mags = rng.uniform(0.5, 2.0, size=8) * np.power(b, rng.integers(-30, 30, size=8))
    x = torch.zeros(8, 4, 4, dtype=torch.float64)
    x[:, 0, 0] = torch.from_numpy(mags)
    r = recovery_exponent(x, config)
    for m, ri in zip(mags, r.tolist(), strict=True):
        # b**r <= 1/m < b**(r+1), checked in exact rational terms via math.log only loosely
        assert m * b**ri <= 1 + 1e-12 and m * b ** (ri + 1) > 1 - 1e-12


def test_exact_power_boundary_for_b2():
    config = ProtocolConfig()
    x = torch.zeros(3, 2, 2, dtype=torch.float32)
    x[0, 0, 0], x[1, 0, 0], x[2, 0, 0] = 1.0, 0.5, 0.75
    # floor(-log2 1) = 0, floor(-log2 0.5) = 1, floor(-log2 0.75) = 0
    assert recovery_exponent(x, config).tolist() == [0, 1, 0]


def test_zero_channel_stays_zero():
    config = ProtocolConfig()
    x = torch.zeros(2, 8, 8)
    x[1, 3, 3] = 2.0**-40
    d = recover(x, config)
    assert torch.equal(d[0], torch.zeros(8, 8))
    assert float(d[1, 3, 3]) == 1.0


def test_bias_shifts_the_exponent(rng):
    a = torch.from_numpy(rng.normal(size=(2, 112, 112)).astype(np.float32))
    base = recover(a, ProtocolConfig())
    shifted = recover(a, ProtocolConfig(bias=3))
    torch.testing.assert_close(shifted, base * 8, rtol=0, atol=0)


def test_protect_faces_shapes_and_recovery_invariance(rng):
    config = ProtocolConfig()
    faces = smooth_face_like(rng, 5)
    e = protect_faces(faces, config, generator=_gen(0))
    assert e.shape == (5, 2, 112, 112) and e.dtype == torch.float32
    assert bool(torch.isfinite(e).all())
    a = normalised_features(faces, config)
    torch.testing.assert_close(recover(e, config).abs(), recover(a, config).abs(), rtol=0, atol=0)


def test_rejects_non_float_and_bad_shapes():
    config = ProtocolConfig()
    with pytest.raises(InputError, match="float"):
        obfuscate(torch.zeros(2, 4, 4, dtype=torch.int32), config)
    with pytest.raises(InputError, match="shape"):
        recover(torch.zeros(4, 4), config)
    with pytest.raises(InputError, match="numpy array or torch tensor"):
        recover([[1.0]], config)  # type: ignore[arg-type]


def test_production_draws_are_exactly_uniform_from_a_secure_stream(monkeypatch):
    """Without a generator, signs and scales come from a fresh ChaCha20 keystream keyed by
    os.urandom, never from torch's generators; the byte -> u map is exactly uniform: a
    source repeating 0..255 gives bytes 0..241 as u = -60 + byte % 121 (each u twice) and
    draws 242..255 again."""
    keys: list[int] = []
    real_urandom = os.urandom

    def counting_urandom(count: int) -> bytes:
        keys.append(count)
        return real_urandom(count)

    def refuse(*args, **kwargs):
        raise AssertionError("a torch draw in production obfuscation")

    monkeypatch.setattr(obfuscation_module.os, "urandom", counting_urandom)
    monkeypatch.setattr(torch, "randint", refuse)
    out = obfuscate(torch.ones(1, 3, 4, 4), ProtocolConfig())
    assert keys == [32, 16]  # one 256-bit key and a 128-bit nonce per call
    assert set(out.abs().unique().tolist()) <= {2.0**k for k in range(-60, 61)}
    assert obfuscation_module._secure_stream()(16).tolist() != [0] * 16

    calls: list[int] = []

    def ramp(count: int) -> np.ndarray:
        calls.append(count)
        return (np.arange(count) % 256).astype(np.uint8)

    signs = random_signs((256,), (-60, 60), None, source=ramp)
    u = -60 + np.concatenate([np.arange(242), np.arange(14)]) % 121
    np.testing.assert_array_equal(signs.numpy(), 1.0 - 2.0 * (u % 2))
    assert calls == [256, 14]


def test_secure_draw_is_uniform_over_wide_ranges():
    stream = obfuscation_module._secure_stream()
    u = obfuscation_module._secure_ints(200_000, -500, 499, stream)
    assert u.min() == -500 and u.max() == 499
    counts = np.bincount(u + 500, minlength=1000)
    assert counts.min() > 100 and counts.max() < 320  # 200 expected per value
    signs = random_signs((100_000,), (0, 999), None)
    assert float((signs > 0).double().mean()) == pytest.approx(0.5, abs=0.01)


@settings(max_examples=100, deadline=None)
@given(
    values=hnp.arrays(
        np.float32,
        (2, 4, 4),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True),
    )
)
def test_fuzz_sent_feature_check_refuses_or_recovers_finite(values):
    """Any finite float32 feature: refused with PayloadError, or recovered to finite values
    whose every channel peaks in (1/2, 1] (b = 2, bias 0)."""
    config = ProtocolConfig()
    try:
        recovered = check_sent_feature(values, config)
    except PayloadError:
        return
    assert np.isfinite(recovered).all()
    peak = np.abs(recovered).max(axis=(1, 2))
    assert ((peak > 0.5) & (peak <= 1.0)).all()
