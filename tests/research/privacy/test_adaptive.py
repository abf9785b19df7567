"""Per-scheme adaptive preprocessing: the registry, the frequency baselines' steps, and the
adaptive variant choosing them."""

from __future__ import annotations

import pytest
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.privacy.adaptive import (
    Adaptive,
    get_adaptive,
    list_adaptive,
    register_adaptive,
    sort_channels_by_energy,
)
from faceobfuscator.research.privacy.run import make_leak
from faceobfuscator.research.privacy.variants import apply_chain, prepare_variant
from tests.research.privacy.synthetic import synthetic_faces

P = ProtocolConfig()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    return torch.from_numpy(synthetic_faces(3, 112, seed=5))


def test_baselines_are_registered():
    assert {"dctdp", "duetface", "partialface", "minusface", "ppfr-fd"} <= set(list_adaptive())
    assert get_adaptive("arcface") is None


def test_registry_rejects_bad_registrations():
    with pytest.raises(ConfigError, match="already registered"):
        register_adaptive("dctdp", Adaptive({}, (("server",),), ""))
    with pytest.raises(ConfigError, match="clash"):
        register_adaptive("x1", Adaptive({"abs": lambda s, x: x}, (("abs",),), ""))
    with pytest.raises(ConfigError, match="unknown steps"):
        register_adaptive("x2", Adaptive({}, (("nope",),), ""))
    with pytest.raises(ConfigError, match="at least one chain"):
        register_adaptive("x3", Adaptive({}, (), ""))


def test_sorting_by_energy_undoes_a_permutation():
    x = torch.randn(2, 3 * 5, 4, 4) * torch.arange(1, 16, dtype=torch.float32)[None, :, None, None]
    perm = torch.tensor([3, 0, 4, 1, 2])
    shuffled = x.reshape(2, 3, 5, 4, 4)[:, :, perm].reshape(2, 15, 4, 4)
    a, b = sort_channels_by_energy(x, groups=3), sort_channels_by_energy(shuffled, groups=3)
    torch.testing.assert_close(a, b)
    rms = a.reshape(2, 3, 5, 16)[:, 0].pow(2).mean(-1)
    assert bool((rms[:, :-1] >= rms[:, 1:]).all())


def test_partialface_order_is_undone(faces):
    scheme = get_scheme("partialface", P)
    step = get_adaptive("partialface").steps["partialface-sort"]
    encoded = scheme.encode(faces)
    subset = torch.zeros(3, dtype=torch.long)
    outs = [step(scheme, scheme.select(encoded, subset, torch.full((3,), o))) for o in range(3)]
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])


def test_dctdp_whitening_uses_the_public_noise(faces):
    scheme = get_scheme("dctdp", P)
    with torch.no_grad():
        scheme.parts().loc.fill_(3.0)
        sent = scheme.client_features(faces, generator=_gen(0))
    out = get_adaptive("dctdp").steps["dctdp-whiten"](scheme, sent)
    torch.testing.assert_close(out, (sent - 3.0) / 2.0)  # scale 1 / 0.5 everywhere


def test_minusface_reencoding_keeps_the_strongest_channels(faces):
    scheme = get_scheme("minusface", P)
    with torch.no_grad():
        sent = scheme.client_features(faces, generator=_gen(0))
    out = get_adaptive("minusface").steps["minusface-sort"](scheme, sent)
    assert out.shape == (3, 48, 112, 112) and bool(torch.isfinite(out).all())
    rms = out.pow(2).mean(dim=(-2, -1))
    assert bool((rms[:, :-1] >= rms[:, 1:] - 1e-6).all())


@pytest.mark.parametrize(
    ("name", "chain", "channels"),
    [
        ("dctdp", ("dctdp-whiten",), 189),
        ("partialface", ("partialface-sort",), 27),
        ("duetface", ("server",), 163),
        ("minusface", ("minusface-sort",), 48),
        ("arcface-fd", (), 64),  # unregistered: the generic chains, unchanged
    ],
)
def test_adaptive_variant_uses_the_scheme_chain(name, chain, channels, faces):
    scheme = get_scheme(name, P)
    if scheme.parts() is not None:
        scheme.parts().eval().requires_grad_(False)
    pre = prepare_variant(
        "adaptive", scheme=scheme, leak=make_leak(scheme, "C"), probe_faces=faces, generator=_gen(1)
    )
    assert pre.chain == chain and pre.in_channels == channels
    own = get_adaptive(name)
    assert (own is not None) == ("tried:" in pre.notes)
    sent = scheme.client_features(faces, generator=_gen(2))
    assert pre(sent).shape[1] == channels
    torch.testing.assert_close(pre(sent), apply_chain(sent, chain, scheme))


def test_ppfr_mix_is_undone_and_the_shuffle_ordered(faces):
    scheme = get_scheme("ppfr-fd", P)
    step = get_adaptive("ppfr-fd").steps["ppfr-unmix-sort"]
    a = step(scheme, scheme.client_features(faces, generator=_gen(1)))
    b = step(scheme, scheme.client_features(faces, generator=_gen(2)))
    # the same channels, exactly (mixing undone), in nearly the same order
    encoded = scheme.encode(faces)
    for x in (a, b):
        torch.testing.assert_close(
            x.pow(2).sum(dim=(-2, -1)).sort(dim=1).values,
            encoded.pow(2).sum(dim=(-2, -1)).sort(dim=1).values,
        )
    assert float((a - b).abs().mean()) < 0.5 * float(encoded.abs().mean())
