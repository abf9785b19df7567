"""Attacker variants: what an attacker does to leaked features before (and after) its
reconstruction network.

- ``as-paper``: nothing; the network trains on the features exactly as leaked.
- ``adaptive``: public, deterministic preprocessing found by probing the client. The
  attacker runs its copy of the client twice on its own faces and keeps the finest chain
  of steps whose output does not change between the two runs (:data:`CHAINS`): for
  FaceObfuscator that is the server's own identity recovery, a per-channel RMS
  normalisation (it undoes the random scale exactly) and the absolute value (it undoes
  the random signs); for an unrandomised scheme it is nothing at all. When the chain
  ends in ``abs``, sign-invariant extra channels may be appended (:data:`EXTRAS`).
- ``white-box``: the adaptive network, then, for schemes whose client it can run as a
  differentiable function (:data:`FORWARD_MODELS`), a data-consistency refinement of each
  reconstruction: gradient steps that make the reconstruction's own invariant features
  match the leaked ones, starting from the network's output.

Preprocessing sees only tensors ``(N, C, S, S)`` and works for any scheme; only the
white-box refinement needs to know a scheme's clean encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import channel_operators
from faceobfuscator.protocol.obfuscation import self_normalise
from faceobfuscator.recognition.schemes import Scheme
from faceobfuscator.research.privacy.adaptive import get_adaptive

__all__ = [
    "CHAINS",
    "EXTRAS",
    "FORWARD_MODELS",
    "Leak",
    "Preprocessor",
    "apply_chain",
    "discover_chain",
    "list_variants",
    "prepare_variant",
]

#: leaked features for uint8 faces ``(N, S, S, 3)`` and a generator
Leak = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

_TINY = 1e-30


def _rms(x: torch.Tensor) -> torch.Tensor:
    # float64 statistics: as-leaked channels can be scaled by up to 2**60
    x64 = x.to(torch.float64)
    power = x64.pow(2).mean(dim=(-2, -1), keepdim=True)
    return (x64 / power.sqrt().clamp_min(_TINY)).to(torch.float32)


def _steps(scheme: Scheme) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    own = get_adaptive(scheme.name)
    extra = {k: partial(f, scheme) for k, f in own.steps.items()} if own else {}
    return {"server": scheme.server_input, "rms": _rms, "abs": torch.abs, **extra}


#: candidate preprocessing chains, finest (least information thrown away) first
CHAINS: tuple[tuple[str, ...], ...] = (
    (),
    ("server",),
    ("server", "rms"),
    ("rms",),
    ("server", "rms", "abs"),
    ("rms", "abs"),
)


def apply_chain(x: torch.Tensor, chain: tuple[str, ...], scheme: Scheme) -> torch.Tensor:
    """Apply the named steps of ``chain`` to leaked features ``(N, C, S, S)``."""
    steps = _steps(scheme)
    for name in chain:
        x = steps[name](x)
    return x


def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


#: sign-invariant extra channels, computed from the chain's (non-negative) output
EXTRAS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sqrt": lambda a: a.clamp_min(0).sqrt(),
    "square": lambda a: a * a,
    "blur": _blur,
    "blur-sqrt": lambda a: _blur(a.clamp_min(0).sqrt()),
}


def discover_chain(
    leak: Leak,
    scheme: Scheme,
    probe_faces: torch.Tensor,
    *,
    generator: torch.Generator,
    tolerance: float = 1e-4,
) -> tuple[tuple[str, ...], dict[str, float]]:
    """The finest chain of :data:`CHAINS` whose output is the same for two independent
    client runs on ``probe_faces``, and every chain's relative discrepancy. With none
    invariant, the chain of least discrepancy wins. A scheme's own chains
    (:mod:`.adaptive`) are tried first, and with none invariant its first one wins."""
    first, second = leak(probe_faces, generator), leak(probe_faces, generator)
    own = get_adaptive(scheme.name)
    candidates = (own.chains if own else ()) + CHAINS
    spread: dict[str, float] = {}
    for chain in candidates:
        a = apply_chain(first, chain, scheme).to(torch.float64)
        b = apply_chain(second, chain, scheme).to(torch.float64)
        scale = torch.maximum(a.abs().amax(), b.abs().amax()).clamp_min(_TINY)
        spread[_chain_name(chain)] = float(((a - b).abs().amax() / scale).nan_to_num(1.0))
    for chain in candidates:
        if spread[_chain_name(chain)] <= tolerance:
            return chain, spread
    if own:
        return own.chains[0], spread
    best = min(CHAINS, key=lambda c: spread[_chain_name(c)])
    return best, spread


def _chain_name(chain: tuple[str, ...]) -> str:
    return "+".join(chain) or "none"


def differentiable_transform(
    grey: torch.Tensor, protocol: ProtocolConfig, channels: tuple[int, ...]
) -> torch.Tensor:
    """DCT channels ``(N, K, S, S)`` of greyscale faces ``(N, S, S)`` as plain matrix
    products ``L_i X L_j^T`` (:func:`~faceobfuscator.protocol.frequency.channel_operators`), which
    autograd can differentiate; :func:`~faceobfuscator.protocol.frequency.fast_transform` computes
    the same values faster but not differentiably."""
    ops = torch.as_tensor(
        np.array(channel_operators(protocol)), dtype=grey.dtype, device=grey.device
    )
    n = protocol.scale
    rows = torch.stack([ops[k // n] for k in channels])  # (K, S, S)
    cols = torch.stack([ops[k % n] for k in channels])
    return rows @ grey[:, None] @ cols.transpose(-1, -2)


def _dct_forward(protocol: ProtocolConfig, channels: tuple[int, ...]) -> ForwardModel:
    lo, hi = protocol.pixel_range
    luma = torch.tensor(protocol.luma, dtype=torch.float32)

    def forward(rgb: torch.Tensor, n_channels: int | None = None) -> torch.Tensor:
        chans = channels[:n_channels]
        grey = torch.einsum("nchw,c->nhw", rgb, luma.to(rgb.device)) * (hi - lo) + lo
        return self_normalise(differentiable_transform(grey, protocol, chans), protocol)

    return forward


#: RGB in [0, 1] ``(N, 3, S, S)`` and a channel count ``n`` -> the first ``n`` (None: all)
#: channels of the scheme's clean features, differentiably
ForwardModel = Callable[[torch.Tensor, int | None], torch.Tensor]
FORWARD_MODELS: dict[str, Callable[[ProtocolConfig], ForwardModel]] = {
    "faceobfuscator": lambda p: _dct_forward(p, p.channels),
    "arcface-fd": lambda p: _dct_forward(p, tuple(range(p.scale**2))),
}


@dataclass(frozen=True)
class RefineSettings:
    """Data-consistency refinement of the white-box attacker.

    Attributes:
        steps: Adam steps per batch of reconstructions.
        lr: Adam learning rate (pixels in [0, 1]).
        proximity: weight of ``mean((x - x0)**2)``, which keeps the refinement near the
            network's output where the leaked features do not decide.
        max_channels: use only the first this many leaked channels. Two gradient channels
            already determine a face up to a constant, so for ArcFace-FD the first nine
            (DC, AC01..AC07, AC10) decide as much as all 64 at a seventh of the cost.
    """

    steps: int = 100
    lr: float = 0.01
    proximity: float = 0.1
    max_channels: int = 9

    def __post_init__(self) -> None:
        if self.steps < 0 or self.lr <= 0 or self.proximity < 0 or self.max_channels < 1:
            raise ConfigError(f"invalid refinement settings {self}")


@dataclass
class Preprocessor:
    """What one attacker variant does to leaked features of one scheme and scenario.

    Attributes:
        variant: the variant's name.
        chain: preprocessing steps (:data:`CHAINS`).
        extras: names of sign-invariant extra channels (:data:`EXTRAS`).
        in_channels: channels of the output of :meth:`__call__`.
        refine_with: the forward model of the white-box refinement, or None.
        notes: how the chain was found, for the report.
    """

    variant: str
    scheme: Scheme
    chain: tuple[str, ...]
    extras: tuple[str, ...]
    in_channels: int
    refine_with: ForwardModel | None = None
    refine_settings: RefineSettings = RefineSettings()
    notes: str = ""

    @property
    def key(self) -> str:
        """Identifies the network input: variants with equal keys can share a network."""
        return "|".join([_chain_name(self.chain), *self.extras])

    def __call__(self, leaked: torch.Tensor) -> torch.Tensor:
        base = apply_chain(leaked, self.chain, self.scheme)
        if not self.extras:
            return base
        return torch.cat([base, *(EXTRAS[e](base) for e in self.extras)], dim=1)

    def refine(self, recon: torch.Tensor, leaked: torch.Tensor) -> torch.Tensor:
        """White-box refinement of reconstructions ``(N, 3, S, S)`` in [0, 1]; the identity
        for other variants and for schemes without a forward model."""
        if self.refine_with is None:
            return recon
        return refine(recon, leaked, self, self.refine_with)


def refine(
    recon: torch.Tensor, leaked: torch.Tensor, pre: Preprocessor, forward: ForwardModel
) -> torch.Tensor:
    """Adjust ``recon`` so that ``chain(forward(x))`` matches ``chain(leaked)``.

    The ``server`` step is skipped on the forward side: on clean features the server's
    recovery is a positive per-channel scale, which the following RMS step removes.
    """
    s = pre.refine_settings
    k = min(s.max_channels, leaked.shape[1])
    leaked = leaked[:, :k].to(recon.device)
    target = apply_chain(leaked, pre.chain, pre.scheme).detach()
    own_chain = tuple(step for step in pre.chain if step != "server")
    x0 = recon.detach()
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=s.lr)
    with torch.enable_grad():
        for _ in range(s.steps):
            pred = apply_chain(forward(x.clamp(0, 1), k), own_chain, pre.scheme)
            loss = F.mse_loss(pred, target) + s.proximity * F.mse_loss(x, x0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return x.detach().clamp_(0, 1)


_VARIANTS = ("as-paper", "adaptive", "white-box")


def list_variants() -> list[str]:
    return list(_VARIANTS)


def prepare_variant(
    name: str,
    *,
    scheme: Scheme,
    leak: Leak,
    probe_faces: torch.Tensor,
    generator: torch.Generator,
    extras: tuple[str, ...] = (),
    refine_settings: RefineSettings = RefineSettings(),
) -> Preprocessor:
    """Build variant ``name`` for a scheme and leak (scenario C: what is sent; D: what is
    stored). ``probe_faces`` are attacker-side uint8 faces ``(N, S, S, 3)`` used only to
    probe the client's randomness; ``extras`` apply where the chain ends in ``abs``."""
    if name not in _VARIANTS:
        raise ConfigError(f"unknown attacker variant {name!r}; known: {list(_VARIANTS)}")
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:
        raise ConfigError(f"unknown adaptive extras {unknown}; known: {sorted(EXTRAS)}")
    sample = leak(probe_faces[:1], generator)
    channels = int(sample.shape[1])
    if name == "as-paper":
        return Preprocessor(name, scheme, (), (), channels, notes="features as leaked")
    chain, spread = discover_chain(leak, scheme, probe_faces, generator=generator)
    channels = int(apply_chain(sample, chain, scheme).shape[1])  # a scheme's step may change it
    used = extras if chain and chain[-1] == "abs" else ()
    notes = (
        "chain "
        + _chain_name(chain)
        + "; spread "
        + ", ".join(f"{k}={v:.1e}" for k, v in spread.items())
    )
    own = get_adaptive(scheme.name)
    if own:
        notes += "; tried: " + own.tried
    forward = None
    if name == "white-box":
        factory = FORWARD_MODELS.get(scheme.name)
        if factory is None:
            notes += "; no forward model for this scheme, so no refinement"
        else:
            forward = factory(scheme.protocol)
    return Preprocessor(
        name,
        scheme,
        chain,
        used,
        channels * (1 + len(used)),
        refine_with=forward,
        refine_settings=refine_settings,
        notes=notes,
    )
