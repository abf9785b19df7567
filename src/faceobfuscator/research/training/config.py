"""The typed, frozen run configuration of ``faceobf train``, read from JSON or TOML.

Paths in a configuration are taken relative to the working directory (run from the
repository root). Unknown keys are errors, listed with the known ones.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig

__all__ = [
    "DataConfig",
    "SyntheticData",
    "ValidationConfig",
    "OptimConfig",
    "HeadConfig",
    "DistillConfig",
    "AugmentConfig",
    "TrainConfig",
    "load_train_config",
]

_AMP = ("none", "bf16", "fp16")
_DEVICES = ("auto", "cpu", "cuda")
_OPTIMIZERS = ("sgd", "adamw")
_SCHEDULES = ("poly", "cosine")
_INITS = ("scratch", "pretrained", "model")


@dataclass(frozen=True)
class SyntheticData:
    """Random faces for throughput measurements (they identify nobody)."""

    identities: int = 1000
    images: int = 20000


@dataclass(frozen=True)
class DataConfig:
    """Exactly one source: a pack file (``faceobf data pack``), aligned folders with a
    split file, an insightface RecordIO ``train.rec``, or synthetic faces.

    Attributes:
        min_images: identities with fewer aligned images are left out (folders only).
        workers: decoding processes for RecordIO.
    """

    pack: str | None = None
    aligned: str | None = None
    split: str | None = None
    recordio: str | None = None
    synthetic: SyntheticData | None = None
    min_images: int = 2
    workers: int = 8

    def kind(self) -> str:
        given = [k for k in ("pack", "aligned", "recordio", "synthetic") if getattr(self, k)]
        if len(given) != 1:
            raise ConfigError(
                f"data must name exactly one of pack, aligned, recordio, synthetic; got {given}"
            )
        if given[0] == "aligned" and not self.split:
            raise ConfigError("data.aligned needs data.split (a file from `faceobf data split`)")
        return given[0]


@dataclass(frozen=True)
class ValidationConfig:
    """Held-out images of training identities, compared in every pair.

    Attributes:
        min_images: identities with at least this many images give held-out images.
        per_identity: images held out from each such identity.
        max_identities: at most this many identities give held-out images.
        far: false accept rate of the calibrated threshold.
        flip: embed face plus mirror (the benchmark protocol) instead of the face alone
            (what a deployed server compares; the default, since the threshold is for it).
    """

    min_images: int = 4
    per_identity: int = 2
    max_identities: int = 300
    far: float = 1e-3
    flip: bool = False


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser and its schedule by step, after an optional linear warm-up. The
    default is the paper's: SGD, lr 0.1, momentum 0.9, weight decay 5e-4, polynomial decay
    of power 2.

    Attributes:
        name: ``sgd`` or ``adamw`` (AdamW ignores ``momentum``).
        schedule: ``poly`` (``(1 - t)^power``) or ``cosine`` (half a cosine to 0).
        pretrained_lr_scale: learning-rate factor for the tensors loaded from pretrained
            weights (``init = "pretrained"``); fresh layers (a new stem) get ``lr``.
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 2.0
    warmup_epochs: float = 0.0
    schedule: str = "poly"
    pretrained_lr_scale: float = 1.0


@dataclass(frozen=True)
class DistillConfig:
    """Distillation from a teacher's embedding of the original face.

    The loss is ``cosine_weight * mean(1 - cos(network(x), teacher))`` plus
    ``arcface_weight`` times the ArcFace loss on the labelled images of the batch. The
    network's embedding size must equal the teacher's (128 for ``sface`` and ``dlib``).

    Attributes:
        teacher: a name of :func:`~faceobfuscator.research.training.teachers.list_teachers`;
            its embeddings must be in the pack (``faceobf data pack --teacher``).
    """

    teacher: str = "sface"
    cosine_weight: float = 1.0
    arcface_weight: float = 0.0


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of the aligned uint8 face before the client's protection (each image
    independently; probabilities per image).

    Attributes:
        p_geometric: probability of a random similarity: shift up to ``shift`` pixels,
            scale within ``1 +- scale``, rotation up to ``rotate`` degrees.
        p_photometric: probability of contrast ``1 +- contrast`` about mid-grey and
            brightness ``+- brightness`` (in 0-255 units).
        p_blur: probability of a Gaussian blur, sigma uniform in ``blur_sigma``.
        p_jpeg: probability of a JPEG round trip, quality uniform in ``jpeg_quality``.
    """

    p_geometric: float = 0.8
    shift: float = 4.0
    scale: float = 0.07
    rotate: float = 8.0
    p_photometric: float = 0.8
    contrast: float = 0.3
    brightness: float = 30.0
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    p_jpeg: float = 0.2
    jpeg_quality: tuple[int, int] = (30, 90)


@dataclass(frozen=True)
class HeadConfig:
    """ArcFace additive angular margin: logits ``s * cos(theta + m)`` for the true class."""

    s: float = 64.0
    m: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """One training run.

    Attributes:
        batch_size: global batch (split evenly over DDP processes).
        amp: ``bf16``/``fp16`` autocast of the network (the obfuscation and recovery always
            run in float32); on CPU only ``bf16`` applies (fast on AVX-512-BF16).
        init: ``scratch``, ``pretrained`` (the backbone's published weights, see
            :func:`~faceobfuscator.recognition.backbones.load_pretrained_weights`) or
            ``model`` (continue from the model directory ``init_model``: same scheme,
            backbone, channels, embedding size and protocol; every tensor counts as
            pretrained for ``optim.pretrained_lr_scale``; the schedule starts anew).
        init_model: the model directory for ``init = "model"``.
        distill: train towards a teacher's embeddings (see :class:`DistillConfig`);
            ``None`` trains with the ArcFace loss alone.
        augment: augmentation before protection; ``None``: a random mirror only.
        channels_last: NHWC memory format (faster convolutions on recent GPUs).
        compile: ``torch.compile`` the network.
        data_on_device: hold in-memory faces on the training device (no data loader).
        validate_every: validate (and plot) every this many epochs and after the last; a
            checkpoint is written after every epoch regardless.
        max_steps: end training after this many optimiser steps (the schedule ends there
            too; 0 saves the initial network, validated); ``None``: ``epochs`` decide.
        max_seconds: stop early (after the current step) once training has run this
            long; a safety net, the schedule still assumes ``epochs``.
    """

    scheme: str
    backbone: str
    data: DataConfig
    name: str = ""
    protocol: dict[str, Any] = field(default_factory=dict)
    embedding_size: int = 512
    batch_size: int = 128
    epochs: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    init: str = "scratch"
    init_model: str | None = None
    distill: DistillConfig | None = None
    augment: AugmentConfig | None = None
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    data_on_device: bool = True
    seed: int = 0
    log_every: int = 20
    validate_every: int = 1
    max_steps: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        p = []
        if min(self.batch_size - 1, self.epochs, self.embedding_size, self.validate_every) < 1:
            p.append("batch_size >= 2 and epochs, embedding_size, validate_every >= 1 required")
        if self.amp not in _AMP:
            p.append(f"amp={self.amp!r}; expected one of {list(_AMP)}")
        if self.device not in _DEVICES:
            p.append(f"device={self.device!r}; expected one of {list(_DEVICES)}")
        if not (0 < self.optim.lr and 0 <= self.optim.momentum < 1 and self.optim.power > 0):
            p.append("optim needs lr > 0, 0 <= momentum < 1 and power > 0")
        if self.optim.name not in _OPTIMIZERS:
            p.append(f"optim.name={self.optim.name!r}; expected one of {list(_OPTIMIZERS)}")
        if self.optim.schedule not in _SCHEDULES:
            p.append(f"optim.schedule={self.optim.schedule!r}; expected one of {list(_SCHEDULES)}")
        if self.optim.pretrained_lr_scale <= 0:
            p.append("optim.pretrained_lr_scale must be > 0")
        if self.max_steps is not None and self.max_steps < 0:
            p.append(f"max_steps={self.max_steps} must be >= 0")
        if self.init not in _INITS:
            p.append(f"init={self.init!r}; expected one of {list(_INITS)}")
        if (self.init == "model") != (self.init_model is not None):
            p.append('init_model names a model directory exactly when init = "model"')
        if self.distill is not None:
            d = self.distill
            if (
                min(d.cosine_weight, d.arcface_weight) < 0
                or d.cosine_weight + d.arcface_weight <= 0
            ):
                p.append("distill weights must be >= 0 and not both 0")
        if not 0 <= self.validation.far < 1:
            p.append(f"validation.far={self.validation.far} must lie in [0, 1)")
        if p:
            raise ConfigError("invalid training configuration:\n  - " + "\n  - ".join(p))
        self.data.kind()
        self.protocol_config  # noqa: B018 - validates the protocol overrides

    @property
    def protocol_config(self) -> ProtocolConfig:
        return ProtocolConfig.from_dict(dict(self.protocol))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _build(cls, data, "config")


_NESTED = {
    "data": DataConfig,
    "distill": DistillConfig,
    "augment": AugmentConfig,
    "synthetic": SyntheticData,
    "optim": OptimConfig,
    "head": HeadConfig,
    "validation": ValidationConfig,
}


def _build(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a table/object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in {where}; known: {sorted(known)}")
    kw = {}
    for k, v in data.items():
        kw[k] = _build(_NESTED[k], v, f"{where}.{k}") if k in _NESTED and v is not None else v
    try:
        return cls(**kw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a ``.json`` or ``.toml`` training configuration."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"training configuration {p} not found")
    try:
        data = tomllib.loads(p.read_text()) if p.suffix == ".toml" else json.loads(p.read_text())
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p} is not valid {p.suffix[1:].upper()}: {exc}") from None
    data.pop("$comment", None)
    return TrainConfig.from_dict(data)
