"""The configuration of a privacy evaluation run: typed, frozen, read from JSON at the
entry point and saved beside the results."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from faceobfuscator.errors import ConfigError
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT
from faceobfuscator.research.privacy.attacks import AttackSettings, list_attacks
from faceobfuscator.research.privacy.variants import EXTRAS, RefineSettings, list_variants

__all__ = ["PrivacyConfig", "ReplaySettings", "SCENARIOS"]

#: C: features leaked from the transmission channel (what is sent);
#: D: features leaked from the server's database (what is stored).
SCENARIOS = ("C", "D")
_VICTIM_DATASETS = ("lfw", "cfp")


@dataclass(frozen=True)
class ReplaySettings:
    """The measurements of ``faceobf privacy replay``: replayed features against a plain and
    a sealed deployment, and the reconstruction attack on what a sealed deployment leaks.

    Attributes:
        model: the server's model directory (a ``faceobfuscator`` model with a calibrated
            threshold).
        dataset: the benchmark whose test-fold victims are enrolled and attacked.
        victims: how many of that benchmark's victims (at most ``victims_per_dataset``).
        attack: the reconstruction attack trained on sealed bytes.
        attack_settings: its size and schedule.
    """

    model: str = "models/mobilefacenet-faceobfuscator"
    dataset: str = "lfw"
    victims: int = 60
    attack: str = "dn"
    attack_settings: AttackSettings = AttackSettings(steps=300, max_seconds=120)

    def problems(self) -> list[str]:
        p = []
        if self.dataset not in _VICTIM_DATASETS:
            p.append(f"replay.dataset={self.dataset!r}; known: {list(_VICTIM_DATASETS)}")
        if not isinstance(self.victims, int) or self.victims < 1:
            p.append(f"replay.victims={self.victims!r} must be a positive integer")
        if self.attack not in list_attacks():
            p.append(f"replay.attack={self.attack!r}; known: {list_attacks()}")
        return p

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attack_settings"] = self.attack_settings.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplaySettings:
        kw = dict(data)
        if "attack_settings" in kw:
            kw["attack_settings"] = AttackSettings(**kw["attack_settings"])
        return cls(**kw)


@dataclass(frozen=True)
class PrivacyConfig:
    """One privacy evaluation.

    Attributes:
        name: a label for the run, used in reports.
        out_dir: where results go (JSON, Markdown, PNG).
        datasets_root: folder holding ``lfw/``, ``lfw_meta/``, ``cfp/``.
        aligned_dir: folder of prepared datasets (``<aligned_dir>/<dataset>/``).
        split: a split file from ``faceobf data split``; None computes the default split.
        pack: a pack folder (``faceobf privacy pack``) to read the faces from instead of
            the prepared datasets, e.g. on a machine without them.
        protocol: a protocol JSON file; None uses the default protocol.
        models_dir: ``<models_dir>/<scheme>/`` model directories for SRRA; a missing one
            marks SRRA as pending for that scheme.
        srra_models: per scheme, the model directory for SRRA, where it is not
            ``<models_dir>/<scheme>/``.
        schemes, attacks, variants, scenarios: what to evaluate.
        attack_settings: per attack, the :class:`AttackSettings` fields to set.
        attacker_images: faces of training identities the attacker trains on.
        probe_images: attacker faces used to probe the client's randomness.
        victim_datasets: benchmarks whose test folds supply the victims.
        victims_per_dataset: victims (people) per benchmark; each gives a probe photo
            (attacked) and another photo (the reference for identity matching).
        adaptive_extras: sign-invariant extra channels for adaptive and white-box.
        refine: white-box refinement settings.
        grid_victims: victims shown in each PNG grid.
        seed: seeds every random choice of the run.
        threads: torch CPU threads.
        device: torch device for training.
        replay: settings of ``faceobf privacy replay`` (:class:`ReplaySettings`).
    """

    name: str = "privacy"
    out_dir: str = "results/privacy"
    datasets_root: str = str(DATASETS_ROOT)
    aligned_dir: str = str(ALIGNED_ROOT)
    split: str | None = None
    pack: str | None = None
    protocol: str | None = None
    models_dir: str = "models"
    srra_models: dict[str, str] = field(default_factory=dict)
    schemes: tuple[str, ...] = ("arcface-fd", "faceobfuscator")
    attacks: tuple[str, ...] = ("dn", "pix2pix")
    variants: tuple[str, ...] = ("as-paper", "adaptive", "white-box")
    scenarios: tuple[str, ...] = SCENARIOS
    attack_settings: dict[str, AttackSettings] = field(default_factory=dict)
    attacker_images: int = 2000
    probe_images: int = 8
    victim_datasets: tuple[str, ...] = _VICTIM_DATASETS
    victims_per_dataset: int = 100
    adaptive_extras: tuple[str, ...] = ()
    refine: RefineSettings = RefineSettings()
    grid_victims: int = 5
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    replay: ReplaySettings = ReplaySettings()

    def __post_init__(self) -> None:
        p: list[str] = []

        def subset(name: str, known: list[str] | tuple[str, ...]) -> None:
            got = getattr(self, name)
            bad = [v for v in got if v not in known]
            if bad or not got:
                p.append(f"{name}={list(got)}: each must be one of {list(known)}, at least one")

        subset("attacks", list_attacks())
        subset("variants", list_variants())
        subset("scenarios", SCENARIOS)
        subset("victim_datasets", _VICTIM_DATASETS)
        bad_extras = sorted(set(self.adaptive_extras) - set(EXTRAS))
        if bad_extras:
            p.append(f"adaptive_extras {bad_extras} unknown; known: {sorted(EXTRAS)}")
        unknown = sorted(set(self.attack_settings) - set(list_attacks()))
        if unknown:
            p.append(f"attack_settings for unknown attacks {unknown}; known: {list_attacks()}")
        for name in ("attacker_images", "probe_images", "victims_per_dataset", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                p.append(f"{name}={v!r} must be a positive integer")
        if not isinstance(self.grid_victims, int) or self.grid_victims < 0:
            p.append(f"grid_victims={self.grid_victims!r} must be an integer >= 0")
        if not self.schemes:
            p.append("schemes is empty")
        stray = sorted(set(self.srra_models) - set(self.schemes))
        if stray:
            p.append(
                f"srra_models for schemes {stray} that are not evaluated: {list(self.schemes)}"
            )
        p += self.replay.problems()
        if p:
            raise ConfigError("invalid privacy configuration:\n  - " + "\n  - ".join(p))

    def settings_for(self, attack: str) -> AttackSettings:
        return self.attack_settings.get(attack, AttackSettings())

    def srra_model_dir(self, scheme: str) -> Path:
        """The model directory used for ``scheme``'s SRRA."""
        return Path(self.srra_models.get(scheme, Path(self.models_dir) / scheme))

    def load_protocol(self) -> ProtocolConfig:
        return ProtocolConfig() if self.protocol is None else ProtocolConfig.load(self.protocol)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attack_settings"] = {k: v.to_dict() for k, v in self.attack_settings.items()}
        d["replay"] = self.replay.to_dict()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a privacy configuration must be a JSON object, got {type(data)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown privacy configuration keys {unknown}; known: {sorted(known)}"
            )
        kw: dict[str, Any] = {}
        try:
            for k, v in data.items():
                if k == "attack_settings":
                    kw[k] = {a: AttackSettings(**s) for a, s in v.items()}
                elif k == "refine":
                    kw[k] = RefineSettings(**v)
                elif k == "replay":
                    kw[k] = ReplaySettings.from_dict(v)
                elif isinstance(v, list):
                    kw[k] = tuple(v)
                else:
                    kw[k] = v
        except TypeError as exc:
            raise ConfigError(f"bad privacy configuration entry: {exc}") from None
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> PrivacyConfig:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"privacy configuration {p} not found")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p} is not valid JSON: {exc}") from None
