"""Scheme and backbone variants for the paper's own experiments (issue 13): the pieces of
FaceObfuscator taken apart, and the auxiliary network of Algorithm 3.

Schemes (registered by name; ``protocol.channels`` selects the DCT channels):

- ``dct-raw``: the retained greyscale block-DCT channels as they come out of the
  transform, no normalisation (Appendix A, Figure 12 (a)-(c)).
- ``dct-normalised``: the retained channels, each self-normalised, not obfuscated: the
  client with visual-information deletion only (Figure 11, Table 5; with all 64 channels it
  equals ``arcface-fd``, the standardised channels of Figure 12 (d)).
- ``faceobfuscator-no-recovery``: the FaceObfuscator client, and a server that feeds what
  was sent straight to the network, in training and in use (Table 5, "w/o recovery").

Backbones ``weighted-<name>`` (for ``sface``, ``mobilefacenet``, ``iresnet18``,
``iresnet50``; :func:`register_weighted_backbone` adds others): the backbone with one
learnable weight per input channel, initialised to 1, multiplying its channel before the
network (the auxiliary network of Algorithm 3, Appendix A). The weights are the tensor
``channel_weights`` of the network's state dict.
"""

from __future__ import annotations

import torch
from torch import nn

from faceobfuscator.errors import InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.frequency import fast_transform, to_greyscale
from faceobfuscator.recognition.backbones import (
    build_backbone,
    list_backbones,
    load_pretrained_weights,
    register_backbone,
)
from faceobfuscator.recognition.schemes import (
    ArcFaceFDScheme,
    FaceObfuscatorScheme,
    Scheme,
    register_scheme,
)

__all__ = [
    "DCTRawScheme",
    "DCTNormalisedScheme",
    "NoRecoveryScheme",
    "WEIGHTS_KEY",
    "add_channel_weights",
    "channel_weights",
    "register_weighted_backbone",
    "weighted_name",
]

#: The state-dict name of the auxiliary network's per-channel weights.
WEIGHTS_KEY = "channel_weights"


class DCTRawScheme(Scheme):
    """The retained DCT channels ``protocol.channels`` of the greyscale face, unnormalised:
    ``(N, K, S, S)`` float32 in the transform's own units (pixels in ``pixel_range``)."""

    name = "dct-raw"

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        self.in_channels = protocol.n_channels

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        # to_greyscale refuses non-uint8 input and fast_transform a wrong face size
        return fast_transform(to_greyscale(faces, self.protocol), self.protocol)


class DCTNormalisedScheme(ArcFaceFDScheme):
    """The retained DCT channels ``protocol.channels``, each self-normalised, sent in the
    clear: FaceObfuscator's client without the obfuscation (visual-information deletion
    only); ``arcface-fd`` restricted to the retained channels."""

    name = "dct-normalised"

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        self.in_channels = protocol.n_channels
        self._channels = protocol.channels


class NoRecoveryScheme(FaceObfuscatorScheme):
    """FaceObfuscator's client with a server that skips identity recovery: the network
    sees the obfuscated channels (random signs and scales ``b**v``) as sent."""

    name = "faceobfuscator-no-recovery"
    has_recovery = False

    def server_input(self, sent: torch.Tensor) -> torch.Tensor:
        return sent


def _weigh_input(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    x = args[0]
    w = getattr(module, WEIGHTS_KEY)
    return (x * w.to(x.dtype).view(1, -1, 1, 1), *args[1:])


def add_channel_weights(network: nn.Module, in_channels: int) -> nn.Module:
    """Give ``network`` a learnable weight per input channel, ``channel_weights``
    ``(in_channels,)`` float32 initialised to 1, that multiplies channel ``c`` of its input
    ``(N, in_channels, S, S)`` before anything else (a forward pre-hook, so the state dict
    keeps the backbone's own names). Returns ``network``."""
    network.register_parameter(WEIGHTS_KEY, nn.Parameter(torch.ones(in_channels)))
    network.register_forward_pre_hook(_weigh_input)
    return network


def channel_weights(network: nn.Module) -> torch.Tensor:
    """The weights ``(C,)`` of a network built by a ``weighted-*`` backbone (a copy).

    Raises:
        InputError: the network has no channel weights.
    """
    w = getattr(network, WEIGHTS_KEY, None)
    if not isinstance(w, torch.Tensor):
        raise InputError(f"{type(network).__name__} has no {WEIGHTS_KEY}; build a weighted-*")
    return w.detach().cpu().clone()


def weighted_name(backbone: str) -> str:
    """The registry name of ``backbone`` with the auxiliary channel weights."""
    return f"weighted-{backbone}"


def register_weighted_backbone(base: str) -> str:
    """Register ``weighted-<base>`` (once; a second call does nothing) and return its name.
    Its pretrained weights are ``base``'s, the channel weights start at 1."""
    name = weighted_name(base)
    if name in list_backbones():
        return name

    def factory(in_channels: int, embedding_size: int) -> nn.Module:
        return add_channel_weights(build_backbone(base, in_channels, embedding_size), in_channels)

    def pretrained(network: nn.Module) -> set[str]:
        # the channel weights are fresh: they train at the full learning rate
        return load_pretrained_weights(base, network) - {WEIGHTS_KEY}

    register_backbone(name, factory, pretrained=pretrained)
    return name


for _cls in (DCTRawScheme, DCTNormalisedScheme, NoRecoveryScheme):
    register_scheme(_cls.name, _cls)
for _base in ("sface", "mobilefacenet", "iresnet18", "iresnet50"):
    register_weighted_backbone(_base)
