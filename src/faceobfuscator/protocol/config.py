"""The protocol configuration: every constant that client, server, training and
evaluation must agree on, in one frozen, validated, JSON-serialisable object."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import ConfigError

__all__ = [
    "ProtocolConfig",
    "ARCFACE_TEMPLATE_112",
    "DEFAULT_IMAGE_SIZE",
    "FORMAT_VERSION",
    "safe_exponent_range",
]

#: Version of the binary payload format (see :mod:`faceobfuscator.protocol.payload`).
FORMAT_VERSION = 1
#: ``ProtocolConfig().image_size``: the side of the aligned crops every committed model and
#: every prepared dataset uses; code that needs it without a config reads it here.
DEFAULT_IMAGE_SIZE = 112

#: The standard ArcFace 112x112 five-point template (x, y): left eye, right eye, nose tip,
#: left mouth corner, right mouth corner (insightface ``arcface_dst``).
ARCFACE_TEMPLATE_112: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)

_FLT_MAX = float(np.finfo(np.float32).max)
_FLT_MIN_NORMAL = float(np.finfo(np.float32).tiny)
_UPSAMPLING = ("half_pixel", "align_corners")


def safe_exponent_range(b: float, n_elements: int) -> tuple[int, int]:
    """Largest integer range ``[v_min, v_max]`` for which ``a * b**v`` stays in the normal
    float32 range for every self-normalised channel ``a`` of ``n_elements`` elements.

    A self-normalised channel satisfies ``|a| <= sqrt(n - 1)`` and, unless it is constant,
    its largest magnitude is at least about 1; both ends must stay normal float32 so that
    identity recovery sees an exact maximum.
    """
    bound = math.sqrt(max(n_elements - 1, 1))
    v_max = math.floor(math.log(_FLT_MAX / bound) / math.log(b))
    v_min = math.ceil(math.log(_FLT_MIN_NORMAL) / math.log(b))
    return v_min, v_max


@dataclass(frozen=True)
class ProtocolConfig:
    """Constants shared by client and server.

    Attributes:
        channels: retained DCT channels, ``k = 8 * i + j`` (``i`` vertical, ``j`` horizontal
            frequency); default AC01 and AC10.
        b: base of the random per-channel scale ``b**v``.
        u_range: inclusive integer range of ``u`` in the random sign ``(-1)**u``.
        v_range: inclusive integer range of ``v`` in the random scale ``b**v``.
        beta: added to the variance in self-normalisation. It assumes pixels in [-1, 1]
            (see ``pixel_range``): the DCT channels of such faces have variances of order
            1e-3..1e-1, so 1e-5 only guards against division by zero on flat images.
        bias: added to the exponent in identity recovery, ``d = e * b**(r + bias)``.
        upsampling: ``"half_pixel"`` (bilinear, ``align_corners=False``) or
            ``"align_corners"`` (the TFace DuetFace/DCTDP convention).
        scale: upsampling factor, equal to the DCT block size.
        image_size: side of the aligned face.
        luma: RGB weights of the greyscale conversion (ITU-R BT.601).
        pixel_range: greyscale values are mapped linearly from [0, 255] to this range.
        template: five-point alignment template for ``image_size`` (x, y).
        format_version: payload format version.
    """

    channels: tuple[int, ...] = (1, 8)
    b: float = 2.0
    u_range: tuple[int, int] = (-60, 60)
    v_range: tuple[int, int] = (-60, 60)
    beta: float = 1e-5
    bias: int = 0
    upsampling: str = "half_pixel"
    scale: int = 8
    image_size: int = DEFAULT_IMAGE_SIZE
    luma: tuple[float, float, float] = (0.299, 0.587, 0.114)
    pixel_range: tuple[float, float] = (-1.0, 1.0)
    template: tuple[tuple[float, float], ...] = field(default=ARCFACE_TEMPLATE_112)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ConfigError("invalid protocol configuration:\n  - " + "\n  - ".join(problems))

    def _problems(self) -> list[str]:
        p: list[str] = []
        n_freq = self.scale * self.scale
        if not self.channels:
            p.append("channels is empty; expected at least one channel index, e.g. [1, 8]")
        elif len(set(self.channels)) != len(self.channels):
            p.append(f"channels {list(self.channels)} has duplicates")
        elif any((not isinstance(k, int)) or k < 0 or k >= n_freq for k in self.channels):
            p.append(f"channels {list(self.channels)} must be integers in [0, {n_freq - 1}]")
        if not (isinstance(self.b, (int, float)) and math.isfinite(self.b) and self.b > 1):
            p.append(f"b={self.b!r} must be a finite number > 1")
        for name in ("u_range", "v_range"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                p.append(f"{name}={list(lo_hi)} must be [low, high] with low <= high")
        if not p:
            v_min, v_max = safe_exponent_range(self.b, self.image_size * self.image_size)
            lo, hi = self.v_range
            if lo < v_min or hi > v_max:
                p.append(
                    f"v_range={list(self.v_range)} lets a * b**v leave the normal float32 range "
                    f"for b={self.b}; the largest safe range is [{v_min}, {v_max}]"
                )
        if not (math.isfinite(self.beta) and self.beta > 0):
            p.append(f"beta={self.beta!r} must be a finite number > 0")
        if self.upsampling not in _UPSAMPLING:
            p.append(f"upsampling={self.upsampling!r}; expected one of {list(_UPSAMPLING)}")
        if self.scale < 2:
            p.append(f"scale={self.scale} must be >= 2")
        if self.image_size < 8:
            p.append(f"image_size={self.image_size} must be >= 8")
        if len(self.luma) != 3:
            p.append(f"luma={list(self.luma)} must hold three RGB weights")
        if len(self.pixel_range) != 2 or not self.pixel_range[0] < self.pixel_range[1]:
            p.append(f"pixel_range={list(self.pixel_range)} must be [low, high] with low < high")
        if len(self.template) != 5 or any(len(pt) != 2 for pt in self.template):
            p.append("template must hold five (x, y) points")
        if self.format_version != FORMAT_VERSION:
            p.append(f"format_version={self.format_version}; this build speaks {FORMAT_VERSION}")
        return p

    @property
    def n_channels(self) -> int:
        return len(self.channels)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return (self.n_channels, self.image_size, self.image_size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = [list(x) if isinstance(x, tuple) else x for x in v]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """SHA-256 of the canonical JSON form; identifies the protocol."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProtocolConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"protocol configuration must be a JSON object, got {type(data)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown protocol configuration keys {unknown}; known: {sorted(known)}"
            )
        kw: dict[str, Any] = {}
        for k, v in data.items():
            if k == "template":
                kw[k] = tuple(tuple(float(c) for c in pt) for pt in v)
            elif isinstance(v, list):
                kw[k] = tuple(v)
            else:
                kw[k] = v
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> ProtocolConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"protocol configuration is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ProtocolConfig:
        return cls.from_json(Path(path).read_text())
