"""Protection schemes: what the client sends and what the server's network sees.

A scheme turns aligned uint8 faces ``(N, S, S, 3)`` into the tensor the client sends, in two
steps: a deterministic :meth:`Scheme.encode` (the clean features) and a random
:meth:`Scheme.randomise` (the protection, drawing from the caller's generator). The server
turns what it receives into the network's input with :meth:`Scheme.server_input`.
Training calls the two client steps separately so that clean features can be reused while
every load still gets a fresh random draw; :meth:`Scheme.client_features` chains them.

Schemes are registered by name (:func:`register_scheme`); :func:`get_scheme` builds one for
a protocol configuration.

Trainable parts. A scheme may own an ``nn.Module`` of trainable parts (:meth:`Scheme.parts`:
Cloak's noise, a learned budget, a client network, a shadow attacker), used by its own
methods. The training loop treats every scheme alike: it moves the parts to the device,
adds their parameters to the optimiser beside the server network's, adds
:meth:`Scheme.training_loss` (the scheme's own objective, or ``None``) to the recognition
loss, and switches the parts between train and eval mode with the network. Model
directories save them beside the network (``scheme.safetensors``, its SHA-256 in
``config.json``) and :func:`~faceobfuscator.recognition.modeldir.load_model` restores them
into ``model.scheme``, so evaluation and the privacy harness use the trained parts. Example::

    class NoisyScheme(ArcFaceScheme):
        name = "noisy"

        def __init__(self, protocol):
            super().__init__(protocol)
            self.noise = nn.Module()
            self.noise.log_scale = nn.Parameter(torch.full((3, 1, 1), -3.0))

        def parts(self):
            return self.noise

        def randomise(self, encoded, *, generator):
            eps = torch.randn(encoded.shape, generator=generator, device=encoded.device)
            return encoded + self.noise.log_scale.exp() * eps

        def training_loss(self, *, faces, sent):
            return -0.1 * self.noise.log_scale.mean()  # more noise is better

    register_scheme("noisy", NoisyScheme)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.features import normalised_features
from faceobfuscator.protocol.frequency import fast_transform, to_greyscale
from faceobfuscator.protocol.obfuscation import obfuscate, recover, self_normalise
from faceobfuscator.registry import Registry

__all__ = [
    "Scheme",
    "check_faces",
    "ArcFaceScheme",
    "ArcFaceFDScheme",
    "FaceObfuscatorScheme",
    "register_scheme",
    "get_scheme",
    "list_schemes",
]


def check_faces(faces: torch.Tensor, protocol: ProtocolConfig) -> torch.Tensor:
    """``faces`` if it is aligned uint8 ``(N, S, S, 3)`` for ``protocol``.

    Raises:
        InputError: anything else (the message says what was received).
    """
    s = protocol.image_size
    if not isinstance(faces, torch.Tensor):
        raise InputError(f"expected a torch tensor of faces, got {type(faces).__name__}")
    if faces.dtype != torch.uint8 or faces.ndim != 4 or tuple(faces.shape[1:]) != (s, s, 3):
        raise InputError(
            f"expected aligned uint8 faces (N, {s}, {s}, 3), got {tuple(faces.shape)} "
            f"{faces.dtype}; align them first (faceobf data prepare)"
        )
    return faces


class Scheme:
    """Base class. Subclasses set :attr:`name`, :attr:`in_channels` and override
    :meth:`encode` and, where there is protection, :meth:`randomise` and
    :meth:`server_input`.

    Attributes:
        name: the registry name.
        in_channels: channels of :meth:`server_input` (the backbone's stem).
        has_recovery: whether :meth:`server_input` differs from what is sent.
        parts_lr_scale: learning-rate factor of the trainable parts.
    """

    name: str = ""
    in_channels: int = 0
    has_recovery: bool = False
    #: learning-rate factor of :meth:`parts` in training (the authors' own rate for them
    #: may differ from the server network's)
    parts_lr_scale: float = 1.0

    def __init__(self, protocol: ProtocolConfig) -> None:
        if not isinstance(protocol, ProtocolConfig):
            raise ConfigError(f"expected a ProtocolConfig, got {type(protocol).__name__}")
        self.protocol = protocol

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        """Deterministic clean features ``(N, C, S, S)`` float32 of uint8 faces
        ``(N, S, S, 3)``, on the faces' device."""
        raise NotImplementedError

    def randomise(self, encoded: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """The protection applied to :meth:`encode`'s output; identity when there is none."""
        return encoded

    def client_features(self, faces: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """What the client sends for uint8 faces ``(N, S, S, 3)``: ``(N, C, S, S)`` float32."""
        return self.randomise(self.encode(faces), generator=generator)

    def server_input(self, sent: torch.Tensor) -> torch.Tensor:
        """The network's input ``(N, in_channels, S, S)`` for what the client sent."""
        return sent

    def stored(self, sent: torch.Tensor) -> torch.Tensor:
        """What the server stores of what the client sent (here: all of it)."""
        return sent

    def parts(self) -> nn.Module | None:
        """The scheme's trainable parts (one module, the same object on every call), or
        ``None`` (the default: nothing to train but the server network). The scheme's
        methods use the parts wherever they are (their device, train or eval mode)."""
        return None

    def training_loss(self, *, faces: torch.Tensor, sent: torch.Tensor) -> torch.Tensor | None:
        """The scheme's own training objective, a float32 scalar added to the recognition
        loss (e.g. Cloak's reward for more noise), or ``None`` (the default).

        Args:
            faces: the uint8 faces ``(N, S, S, 3)`` of the batch, after augmentation.
            sent: what the client sent for them, :meth:`client_features` ``(N, C, S, S)``,
                differentiable in the parts' parameters.
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, protocol={self.protocol.hash[:12]})"


class ArcFaceScheme(Scheme):
    """The unprotected baseline: the aligned RGB face, pixels mapped linearly from [0, 255]
    to ``protocol.pixel_range`` ([-1, 1], the ArcFace normalisation), channels first."""

    name = "arcface"
    in_channels = 3

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        x = check_faces(faces, self.protocol)
        lo, hi = self.protocol.pixel_range
        rgb = x.permute(0, 3, 1, 2).to(torch.float32)
        return rgb.mul_((hi - lo) / 255.0).add_(lo).contiguous()


class ArcFaceFDScheme(Scheme):
    """The unprotected frequency-domain baseline (ArcFace-FD): all ``scale**2`` DCT channels
    of the greyscale face, each self-normalised (zero mean, unit variance per channel and
    image, :func:`~faceobfuscator.protocol.obfuscation.self_normalise`). The channels' magnitudes
    differ by orders (DC against high frequencies); normalising each one puts them on one
    scale, as the FaceObfuscator client does for its retained channels, so the two schemes
    differ only in the channel set and the obfuscation."""

    name = "arcface-fd"

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        self.in_channels = protocol.scale**2
        self._channels = tuple(range(self.in_channels))

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        grey = to_greyscale(check_faces(faces, self.protocol), self.protocol)
        chans = fast_transform(grey, self.protocol, channels=self._channels)
        return self_normalise(chans, self.protocol)


class FaceObfuscatorScheme(Scheme):
    """The paper's scheme: the client sends the retained DCT channels (``protocol.channels``),
    self-normalised and obfuscated with a fresh random draw; the server applies identity
    recovery before the network."""

    name = "faceobfuscator"
    has_recovery = True

    def __init__(self, protocol: ProtocolConfig) -> None:
        super().__init__(protocol)
        self.in_channels = protocol.n_channels

    def encode(self, faces: torch.Tensor) -> torch.Tensor:
        return normalised_features(check_faces(faces, self.protocol), self.protocol)

    def randomise(self, encoded: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        # a generator on the features' device keeps the draw there (fast on a GPU)
        return obfuscate(encoded, self.protocol, generator=generator)

    def server_input(self, sent: torch.Tensor) -> torch.Tensor:
        return recover(sent, self.protocol)


_REGISTRY: Registry[Callable[[ProtocolConfig], Scheme]] = Registry("scheme")


def register_scheme(name: str, factory: Callable[[ProtocolConfig], Scheme]) -> None:
    """Register ``factory(protocol) -> Scheme`` under ``name``; a taken name raises."""
    _REGISTRY.add(name, factory)


def list_schemes() -> list[str]:
    """Registered scheme names, sorted."""
    return _REGISTRY.names()


def get_scheme(name: str, protocol: ProtocolConfig) -> Scheme:
    """The scheme ``name`` for ``protocol``; an unknown name lists the known ones."""
    return _REGISTRY.get(name)(protocol)


for _cls in (ArcFaceScheme, ArcFaceFDScheme, FaceObfuscatorScheme):
    register_scheme(_cls.name, _cls)

# the baselines register themselves beside the built-in schemes; imported last, when every
# name they use from this module exists
from faceobfuscator.recognition import baselines as _baselines  # noqa: E402, F401
