"""Attacker variants: the adaptive attacker finds the invariant preprocessing by probing
the client, the white-box refinement moves reconstructions towards consistency with the
leaked features, and the differentiable transform agrees with the fast one."""

from __future__ import annotations

import pytest
import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import fast_transform
from faceobfuscator.protocol.obfuscation import self_normalise
from faceobfuscator.recognition.schemes import get_scheme
from faceobfuscator.research.privacy.run import make_leak
from faceobfuscator.research.privacy.variants import (
    EXTRAS,
    FORWARD_MODELS,
    RefineSettings,
    apply_chain,
    differentiable_transform,
    prepare_variant,
)
from tests.research.privacy.synthetic import synthetic_faces

PROTOCOL = ProtocolConfig()


def _faces(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(synthetic_faces(n, 112, seed=seed))


def _prepare(variant: str, scheme_name: str, **kw):
    scheme = get_scheme(scheme_name, PROTOCOL)
    leak = make_leak(scheme, "C")
    g = torch.Generator().manual_seed(0)
    return prepare_variant(
        variant, scheme=scheme, leak=leak, probe_faces=_faces(4), generator=g, **kw
    ), leak


@pytest.mark.parametrize(
    ("scheme_name", "chain"),
    [("faceobfuscator", ("server", "rms", "abs")), ("arcface-fd", ()), ("arcface", ())],
)
def test_adaptive_finds_the_finest_invariant_chain(
    scheme_name: str, chain: tuple[str, ...]
) -> None:
    pre, leak = _prepare("adaptive", scheme_name)
    assert pre.chain == chain
    faces = _faces(3, seed=1)
    a = pre(leak(faces, torch.Generator().manual_seed(1)))
    b = pre(leak(faces, torch.Generator().manual_seed(2)))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adaptive_faceobfuscator_features_are_the_clean_magnitudes() -> None:
    # server recovery, RMS and |.| give exactly |self-normalised channels| up to one constant
    pre, leak = _prepare("adaptive", "faceobfuscator")
    faces = _faces(2, seed=3)
    got = pre(leak(faces, torch.Generator().manual_seed(4)))
    clean = self_normalise(fast_transform(_grey(faces), PROTOCOL), PROTOCOL).abs()
    ratio = got / clean.clamp_min(1e-6)
    mask = clean > 1e-2
    assert ratio[mask].std() / ratio[mask].mean() < 1e-4


def _grey(faces: torch.Tensor) -> torch.Tensor:
    from faceobfuscator.protocol.frequency import to_greyscale

    return to_greyscale(faces, PROTOCOL)


def test_as_paper_is_the_leak_itself_and_extras_add_channels() -> None:
    pre, leak = _prepare("as-paper", "faceobfuscator")
    x = leak(_faces(1), torch.Generator().manual_seed(0))
    assert pre.chain == () and torch.equal(pre(x), x)
    ext, _ = _prepare("adaptive", "faceobfuscator", extras=("sqrt", "blur"))
    assert ext.in_channels == 2 * 3 and ext(x).shape == (1, 6, 112, 112)
    base = ext(x)[:, :2]
    torch.testing.assert_close(ext(x)[:, 2:4], EXTRAS["sqrt"](base))
    with pytest.raises(ConfigError, match="unknown adaptive extras"):
        _prepare("adaptive", "faceobfuscator", extras=("phase",))
    with pytest.raises(ConfigError, match="known: \\['as-paper', 'adaptive', 'white-box'\\]"):
        _prepare("grey-box", "faceobfuscator")


@pytest.mark.parametrize("channels", [(1, 8), tuple(range(64))])
def test_differentiable_transform_matches_fast_transform(channels: tuple[int, ...]) -> None:
    grey = torch.rand(2, 112, 112, dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(
        differentiable_transform(grey, PROTOCOL, channels),
        fast_transform(grey, PROTOCOL, channels=channels),
        rtol=1e-9,
        atol=1e-9,
    )


@pytest.mark.parametrize("scheme_name", sorted(FORWARD_MODELS))
def test_forward_models_reproduce_the_clean_encoder(scheme_name: str) -> None:
    scheme = get_scheme(scheme_name, PROTOCOL)
    faces = _faces(2, seed=5)
    rgb = faces.permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(
        FORWARD_MODELS[scheme_name](PROTOCOL)(rgb, None), scheme.encode(faces), rtol=1e-3, atol=2e-3
    )


def test_white_box_refinement_improves_consistency() -> None:
    pre, leak = _prepare(
        "white-box", "faceobfuscator", refine_settings=RefineSettings(steps=60, lr=0.02)
    )
    assert pre.refine_with is not None
    faces = _faces(2, seed=6)
    leaked = leak(faces, torch.Generator().manual_seed(7))
    truth = faces.permute(0, 3, 1, 2).float() / 255
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(8))
    start = (truth + 0.25 * noise).clamp(0, 1)

    def inconsistency(x: torch.Tensor) -> float:
        own = apply_chain(pre.refine_with(x, None), ("rms", "abs"), pre.scheme)
        return float(((own - pre(leaked)) ** 2).mean())

    refined = pre.refine(start, leaked)
    assert inconsistency(refined) < 0.5 * inconsistency(start)
    assert float(((refined - truth) ** 2).mean()) < float(((start - truth) ** 2).mean())
    adaptive, _ = _prepare("adaptive", "faceobfuscator")
    assert torch.equal(adaptive.refine(start, leaked), start)
