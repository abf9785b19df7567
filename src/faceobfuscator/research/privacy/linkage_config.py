"""The configuration of ``faceobf privacy linkage``: typed, frozen, read from JSON at the
entry point and saved beside the results."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT

__all__ = ["LINKAGE_VARIANTS", "RECOGNIZERS", "LinkerSettings", "LinkageConfig"]

#: ``as-paper``: the leaked tensor as it is; ``adaptive``: the public deterministic
#: preprocessing of :mod:`.variants`; ``server-recipe``: the server's own input (identity
#: recovery) and training recipe (augmentation before protection)
LINKAGE_VARIANTS = ("as-paper", "adaptive", "server-recipe")
#: the independent recognizers whose embedding the attacker learns to predict
RECOGNIZERS = ("dlib", "sface")
_SCENARIOS = ("C", "D")


@dataclass(frozen=True)
class LinkerSettings:
    """Training of one linkage network: SFace initialisation (a new stem where the leaked
    tensor is not RGB), cosine distillation to the recognizer's embedding of the original
    face, AdamW with a cosine schedule, bf16 autocast on the CPU: the recipe of
    ``configs/cpu-sface-*.json`` (issue 11), in a smaller budget.

    Attributes:
        steps: optimiser steps (the schedule's length).
        batch_size: faces per step.
        max_seconds: wall-clock limit; training stops early (the log says so).
        lr: base learning rate (fresh layers); pretrained layers get
            ``lr * pretrained_lr_scale``.
        warmup: share of ``steps`` of linear warm-up.
        bf16: bf16 autocast (CPU and CUDA).
    """

    steps: int = 60
    batch_size: int = 32
    max_seconds: float = 150.0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pretrained_lr_scale: float = 0.1
    warmup: float = 0.2
    bf16: bool = True

    def problems(self) -> list[str]:
        p = []
        if self.steps < 1 or self.batch_size < 2:
            p.append(f"linker steps={self.steps}, batch_size={self.batch_size}: need >= 1, >= 2")
        if self.max_seconds <= 0 or self.lr <= 0 or not 0 <= self.warmup < 1:
            p.append("linker max_seconds and lr must be > 0, warmup in [0, 1)")
        return p


@dataclass(frozen=True)
class LinkageConfig:
    """One linkage evaluation (issue 14).

    Attributes:
        name: a label for the report.
        out_dir: where ``linkage.json``, ``linkage.md`` and the figure go.
        datasets_root, aligned_dir, split, protocol, models_dir: as in
            :class:`~faceobfuscator.research.privacy.config.PrivacyConfig`.
        cache_dir: recognizer embeddings, cached by face (``sface`` in the teachers'
            cache, ``dlib`` raw descriptors beside it).
        schemes: scheme names; ``"all"`` stands for every other registered scheme.
        require_model: evaluate only schemes with a server model (:meth:`model_dir`).
        variants, scenarios, recognizers: what to evaluate.
        attacker_images: the attacker's faces: half FairFace (people from Flickr, in no
            benchmark), half LFW/CFP training identities (people in no test pair).
        victims_per_dataset: LFW and CFP test-fold victims (one pair each).
        gallery_identities: identities in the gallery of real photos (the victims' other
            photos, padded with one photo each of other test-fold people).
        linker: training settings of each linkage network.
        sealed: also attack what a sealed deployment leaks (ciphertexts), for these
            schemes, with ``sealed_recognizer`` (one of ``recognizers``).
        reconstructions: ``{"config": privacy config, "folder": saved reconstructions}``
            to score the reconstruction attacks at the recognizer's FMR 0.1%; empty: skip.
        fmr: the false-match rate of the operating point (0.1%).
        dlib_chip_matrix: the 2x3 map from the crop to dlib's chip; None: the
            recognizer's default (:data:`~faceobfuscator.research.privacy.identity.CHIP_FROM_ARCFACE_112`).
        seed, threads, device: as usual.
    """

    name: str = "linkage"
    out_dir: str = "results/privacy"
    datasets_root: str = str(DATASETS_ROOT)
    aligned_dir: str = str(ALIGNED_ROOT)
    split: str | None = None
    protocol: str | None = None
    models_dir: str = "models"
    model_prefix: str = "sface-"
    cache_dir: str = "cache/teachers"
    schemes: tuple[str, ...] = ("all",)
    require_model: bool = False
    variants: tuple[str, ...] = LINKAGE_VARIANTS
    scenarios: tuple[str, ...] = _SCENARIOS
    recognizers: tuple[str, ...] = RECOGNIZERS
    attacker_images: int = 1000
    victims_per_dataset: int = 100
    gallery_identities: int = 1000
    linker: LinkerSettings = LinkerSettings()
    sealed: tuple[str, ...] = ("faceobfuscator",)
    sealed_recognizer: str = "dlib"
    reconstructions: dict[str, str] = field(default_factory=dict)
    fmr: float = 1e-3
    dlib_chip_matrix: tuple[tuple[float, ...], ...] | None = None
    seed: int = 0
    threads: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        p: list[str] = []
        for name, known in (
            ("variants", LINKAGE_VARIANTS),
            ("scenarios", _SCENARIOS),
            ("recognizers", RECOGNIZERS),
        ):
            got = getattr(self, name)
            if not got or any(v not in known for v in got):
                p.append(f"{name}={list(got)}: each must be one of {list(known)}, at least one")
        if not self.schemes:
            p.append("schemes is empty (use ['all'] for every registered scheme)")
        for name in ("attacker_images", "victims_per_dataset", "gallery_identities", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                p.append(f"{name}={v!r} must be a positive integer")
        if self.gallery_identities < 2 * self.victims_per_dataset:
            p.append("gallery_identities must cover both datasets' victims")
        if self.sealed and self.sealed_recognizer not in self.recognizers:
            p.append(f"sealed_recognizer={self.sealed_recognizer!r} is not in recognizers")
        m = self.dlib_chip_matrix
        if m is not None and (len(m) != 2 or any(len(r) != 3 for r in m)):
            p.append(f"dlib_chip_matrix must be 2x3, got {m}")
        if not 0 < self.fmr < 1:
            p.append(f"fmr={self.fmr} must lie in (0, 1)")
        if self.reconstructions and set(self.reconstructions) != {"config", "folder"}:
            p.append("reconstructions needs exactly the keys 'config' and 'folder'")
        p += self.linker.problems()
        if p:
            raise ConfigError("invalid linkage configuration:\n  - " + "\n  - ".join(p))

    def scheme_names(self) -> list[str]:
        """The schemes to evaluate, in order: those named, and where ``all`` stands, every
        other registered scheme (sorted). With ``require_model``, schemes without a server
        model (:meth:`model_dir`) are left out."""
        from faceobfuscator.recognition.schemes import list_schemes

        known = list_schemes()
        bad = [s for s in self.schemes if s not in known and s != "all"]
        if bad:
            raise ConfigError(f"unknown schemes {bad}; registered: {known}")
        named = [s for s in self.schemes if s != "all"]
        out: list[str] = []
        for s in self.schemes:
            for name in [x for x in known if x not in named] if s == "all" else [s]:
                if name not in out:
                    out.append(name)
        if self.require_model:
            out = [s for s in out if (self.model_dir(s) / "config.json").is_file()]
        return out

    def model_dir(self, scheme: str) -> Path:
        """The server model of ``scheme`` (``<models_dir>/<model_prefix><scheme>``)."""
        return Path(self.models_dir) / f"{self.model_prefix}{scheme}"

    def load_protocol(self) -> ProtocolConfig:
        return ProtocolConfig() if self.protocol is None else ProtocolConfig.load(self.protocol)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkageConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a linkage configuration must be a JSON object, got {type(data)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"$comment"})
        if unknown:
            raise ConfigError(
                f"unknown linkage configuration keys {unknown}; known: {sorted(known)}"
            )
        kw: dict[str, Any] = {}
        try:
            for k, v in data.items():
                if k == "$comment":
                    continue
                if k == "linker":
                    kw[k] = LinkerSettings(**v)
                elif k == "dlib_chip_matrix":
                    kw[k] = None if v is None else tuple(tuple(map(float, r)) for r in v)
                else:
                    kw[k] = tuple(v) if isinstance(v, list) else v
        except TypeError as exc:
            raise ConfigError(f"bad linkage configuration entry: {exc}") from None
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> LinkageConfig:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"linkage configuration {p} not found")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON: {exc}") from None
