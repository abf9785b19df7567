"""Per-scheme adaptive preprocessing: the public, deterministic steps an attacker applies
to one scheme's leaked features to undo its randomness as far as it can, registered by
scheme name so that a new scheme adds its own (:func:`register_adaptive`).

The ``adaptive`` attacker variant (:mod:`.variants`) tries the registered chains of the
scheme first, then the generic ones (server input, per-channel RMS, magnitudes), and keeps
the first whose output is the same for two client runs on the same faces; when none is
(the randomness cannot be undone exactly) it keeps the scheme's first registered chain.
Each registration says what was tried (``tried``), for the report.

Steps see leaked features ``(N, C, S, S)`` and the scheme (its public client: fixed
subsets, trained parts); they may change the channel count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.frequency import fast_transform
from faceobfuscator.recognition.baselines.dctdp import LaplaceBudget
from faceobfuscator.recognition.colour_dct import ycbcr_from_rgb
from faceobfuscator.recognition.schemes import Scheme

__all__ = [
    "Adaptive",
    "Step",
    "get_adaptive",
    "list_adaptive",
    "register_adaptive",
    "sort_channels_by_energy",
]

#: ``step(scheme, leaked (N, C, S, S)) -> features (N, C', S, S)``
Step = Callable[[Scheme, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Adaptive:
    """One scheme's adaptive preprocessing.

    Attributes:
        steps: named steps, usable in ``chains`` beside the generic ``server``, ``rms`` and
            ``abs``; names must not clash with them.
        chains: candidate chains, preferred first.
        tried: what was tried and why these chains, for the report.
    """

    steps: dict[str, Step]
    chains: tuple[tuple[str, ...], ...]
    tried: str


_GENERIC = ("server", "rms", "abs")
_REGISTRY: dict[str, Adaptive] = {}


def register_adaptive(scheme: str, adaptive: Adaptive) -> None:
    """Register ``scheme``'s adaptive preprocessing; a second registration, a step named
    like a generic one or a chain naming an unknown step raises
    :class:`~faceobfuscator.errors.ConfigError`."""
    if scheme in _REGISTRY:
        raise ConfigError(f"adaptive preprocessing for {scheme!r} is already registered")
    clash = sorted(set(adaptive.steps) & set(_GENERIC))
    if clash:
        raise ConfigError(f"steps {clash} clash with the generic steps {list(_GENERIC)}")
    known = set(adaptive.steps) | set(_GENERIC)
    for chain in adaptive.chains:
        unknown = [s for s in chain if s not in known]
        if unknown:
            raise ConfigError(f"chain {list(chain)} names unknown steps {unknown}")
    if not adaptive.chains:
        raise ConfigError(f"adaptive preprocessing for {scheme!r} needs at least one chain")
    _REGISTRY[scheme] = adaptive


def get_adaptive(scheme: str) -> Adaptive | None:
    """``scheme``'s registered adaptive preprocessing, or None (generic chains only)."""
    return _REGISTRY.get(scheme)


def list_adaptive() -> list[str]:
    """Schemes with registered adaptive preprocessing, sorted."""
    return sorted(_REGISTRY)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float64).pow(2).mean(dim=(-2, -1)).sqrt()


def sort_channels_by_energy(
    x: torch.Tensor, *, groups: int = 1, key_group: int = 0
) -> torch.Tensor:
    """Reorder the channels of each face by falling RMS: a canonical order that does not
    depend on how they were permuted. ``x`` ``(N, groups * K, S, S)`` holds ``groups``
    blocks permuted alike (colour planes); the order is taken from block ``key_group`` and
    applied to every block."""
    n, c, h, w = x.shape
    if c % groups:
        raise ConfigError(f"{c} channels do not split into {groups} groups")
    blocks = x.reshape(n, groups, c // groups, h, w)
    order = _rms(blocks[:, key_group]).argsort(dim=1, descending=True)
    index = order[:, None, :, None, None].expand(n, groups, c // groups, h, w)
    return torch.gather(blocks, 2, index).reshape(n, c, h, w)


# ---- the frequency-domain baselines (issue 12) -------------------------------------------


def _dctdp_whiten(scheme: Scheme, x: torch.Tensor) -> torch.Tensor:
    noise = scheme.parts()
    if not isinstance(noise, LaplaceBudget):
        raise ConfigError(f"dctdp's adaptive step needs the scheme's noise, got {noise!r}")
    loc = noise.loc.detach().to(x.device, x.dtype)
    scale = noise.scales().detach().to(x.device, x.dtype)
    return (x - loc) / scale


def _partialface_canonical(scheme: Scheme, x: torch.Tensor) -> torch.Tensor:
    return sort_channels_by_energy(x, groups=3)


_UNIT = 128.0


def _minusface_canonical(scheme: Scheme, x: torch.Tensor, keep: int = 48) -> torch.Tensor:
    # back to RGB in 8-bit units, re-encoded with the public colour DCT: the permuted residue
    # channels (up to decode-then-encode), then a canonical order by energy, the strongest
    lo, hi = scheme.protocol.pixel_range
    planes = ycbcr_from_rgb((x - lo) * (255.0 / (hi - lo)))
    coeffs = fast_transform(
        planes, scheme.protocol, channels=tuple(range(scheme.protocol.scale**2))
    )
    return sort_channels_by_energy(coeffs.flatten(1, 2))[:, :keep] / _UNIT


register_adaptive(
    "dctdp",
    Adaptive(
        {"dctdp-whiten": _dctdp_whiten},
        (("dctdp-whiten",), ("server",)),
        "the noise cannot be removed; subtract the client's public learned mean and divide "
        "each element by its public Laplace scale, so elements with little noise dominate "
        "(tried before the server's per-channel normalisation)",
    ),
)
register_adaptive(
    "partialface",
    Adaptive(
        {"partialface-sort": _partialface_canonical},
        (("partialface-sort",), ("server", "partialface-sort")),
        "the order of a subset's channels is undone by sorting them by energy (the same "
        "order in Y, Cb, Cr, taken from Y); the subset drawn cannot be told exactly, so "
        "the network sees a subset of unknown frequencies in a canonical order",
    ),
)
register_adaptive(
    "duetface",
    Adaptive(
        {},
        (("server",),),
        "no randomness to undo; the server's per-channel normalisation (public) puts the "
        "high-frequency channels on one scale beside the guiding mask",
    ),
)
register_adaptive(
    "minusface",
    Adaptive(
        {"minusface-sort": _minusface_canonical},
        (("minusface-sort",),),
        "re-encode the sent image with the public colour DCT (192 channels: the shuffled "
        "residue, up to decode-then-encode), sort the channels by energy and keep the 48 "
        "strongest; the shuffle itself cannot be undone",
    ),
)


# ---- baselines-A's schemes (issue 12): their public randomness as the attacker sees it ---


def _roughness(x: torch.Tensor) -> torch.Tensor:
    dx = (x[..., :, 1:] - x[..., :, :-1]).to(torch.float64).pow(2).mean(dim=(-2, -1))
    dy = (x[..., 1:, :] - x[..., :-1, :]).to(torch.float64).pow(2).mean(dim=(-2, -1))
    return dx + dy


def _ppfr_unmix_sort(scheme: Scheme, x: torch.Tensor) -> torch.Tensor:
    # the pair mix ((a + b), (a - b)) / sqrt 2 is its own inverse: undo it exactly, then
    # order the (self-normalised, so equally strong) channels from smooth to rough
    a, b = x[:, 0::2], x[:, 1::2]
    unmixed = torch.stack([a + b, a - b], dim=2).flatten(1, 2) / 2**0.5
    order = _roughness(unmixed).argsort(dim=1)
    n, c, h, w = unmixed.shape
    return torch.gather(unmixed, 1, order[:, :, None, None].expand(n, c, h, w))


register_adaptive(
    "ppfr-fd",
    Adaptive(
        {"ppfr-unmix-sort": _ppfr_unmix_sort},
        (("ppfr-unmix-sort",),),
        "the orthogonal pair mix is undone exactly (it is its own inverse); the shuffle is "
        "undone approximately by ordering the channels from smooth to rough (they are "
        "self-normalised, so energy cannot order them)",
    ),
)
register_adaptive(
    "instahide",
    Adaptive(
        {},
        (("abs",), ("rms", "abs")),
        "magnitudes undo the random pixel signs; the mix with a public face stays (the "
        "published attacks on InstaHide need many encodings of the same private image, and "
        "the client encodes each photo once)",
    ),
)
