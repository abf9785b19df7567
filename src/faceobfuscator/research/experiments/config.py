"""The configuration of one experiment run (``faceobf experiment NAME CONFIG``): typed,
frozen, read from JSON at the entry point and saved beside the results.

An experiment trains recognition models with one recipe (a ``faceobf train``
configuration, ``recipe``, with ``train`` overrides; every model of every experiment
that resolves to the same training configuration is trained once, under
``models_dir``), evaluates them on verification benchmarks (``evaluation``) and runs the
privacy harness on what each setting's client sends (``privacy``, the fields of a
:class:`~faceobfuscator.research.privacy.config.PrivacyConfig`; results shared the same
way under ``privacy_dir``). ``settings`` holds the experiment's own parameters.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from faceobfuscator.errors import ConfigError
from faceobfuscator.research.data.paths import ALIGNED_ROOT, DATASETS_ROOT

__all__ = ["EvaluationSettings", "ExperimentConfig", "load_experiment_config"]


@dataclass(frozen=True)
class EvaluationSettings:
    """Verification of each model (``faceobf eval verify``).

    Attributes:
        benchmarks: ``lfw``, ``cfp-ff``, ``cfp-fp`` or ``bin:PATH``.
        folds: the protocol folds to use, at least two (the threshold of each is chosen on
            the others); ``None``: 6-10 (1-10 for ``bin:``).
        flip: embed face plus mirror (the benchmark protocol) or the face alone.
        bf16: bf16 autocast of the network.
        seed: seed of the protection draws.
        far: false accept rate of the reported TAR.
    """

    benchmarks: tuple[str, ...] = ("lfw", "cfp-fp")
    folds: tuple[int, ...] | None = None
    flip: bool = True
    bf16: bool = True
    batch_size: int = 64
    seed: int = 0
    far: float = 1e-3
    datasets_root: str = str(DATASETS_ROOT)
    aligned_root: str = str(ALIGNED_ROOT)


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment.

    Attributes:
        experiment: the experiment's name (``faceobf experiment NAME`` must agree).
        recipe: a ``faceobf train`` configuration file (JSON or TOML) that every model of
            the experiment starts from; ``scheme``, ``backbone`` and ``protocol`` are set
            per model.
        train: overrides of the recipe's fields (nested tables merge).
        out_dir: where the JSON, table and figure go.
        models_dir, privacy_dir: caches of trained models and privacy results, shared by
            every experiment that uses the same folders.
        privacy: :class:`PrivacyConfig` fields of the privacy runs (``schemes``,
            ``protocol``, ``out_dir`` and ``scenarios`` are set per run); ``None``: no
            privacy measurements.
        threads: torch CPU threads.
        device: ``auto``, ``cpu`` or ``cuda`` for training and evaluation.
        settings: the experiment's own parameters (see each experiment).
    """

    experiment: str
    recipe: str
    train: dict[str, Any] = field(default_factory=dict)
    out_dir: str = ""
    models_dir: str = "cache/experiments/models"
    privacy_dir: str = "cache/experiments/privacy"
    evaluation: EvaluationSettings = EvaluationSettings()
    privacy: dict[str, Any] | None = None
    threads: int = 1
    device: str = "auto"
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = []
        if not isinstance(self.threads, int) or self.threads < 1:
            p.append(f"threads={self.threads!r} must be a positive integer")
        if self.device not in ("auto", "cpu", "cuda"):
            p.append(f"device={self.device!r}; expected auto, cpu or cuda")
        if not self.evaluation.benchmarks:
            p.append("evaluation.benchmarks is empty")
        folds = self.evaluation.folds
        if folds is not None and len(set(folds)) < 2:
            p.append(f"evaluation.folds={list(folds)}: the k-fold protocol needs two folds or more")
        for name in ("train", "settings"):
            if not isinstance(getattr(self, name), dict):
                p.append(f"{name} must be an object")
        if self.privacy is not None and not isinstance(self.privacy, dict):
            p.append("privacy must be an object or null")
        if p:
            raise ConfigError("invalid experiment configuration:\n  - " + "\n  - ".join(p))

    @property
    def output(self) -> Path:
        return Path(self.out_dir or f"results/experiments/{self.experiment}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"an experiment configuration must be an object, got {type(data)}")
        data = {k: v for k, v in data.items() if k != "$comment"}
        _check_keys(cls, data, "experiment configuration")
        kw = dict(data)
        if "evaluation" in kw:
            ev = kw["evaluation"]
            if not isinstance(ev, dict):
                raise ConfigError("evaluation must be an object")
            _check_keys(EvaluationSettings, ev, "evaluation")
            values: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in ev.items()
            }
            kw["evaluation"] = EvaluationSettings(**values)
        try:
            return cls(**kw)
        except TypeError as exc:
            raise ConfigError(f"experiment configuration: {exc}") from None


def _check_keys(cls: Any, data: dict[str, Any], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown keys {unknown} in the {where}; known: {sorted(known)}")


def load_experiment_config(path: str | Path) -> ExperimentConfig:
    """Read an experiment configuration (JSON; a ``$comment`` key is ignored).

    Raises:
        ConfigError: missing file, invalid JSON, unknown keys or invalid values.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"experiment configuration {p} not found")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p} is not valid JSON: {exc}") from None
    return ExperimentConfig.from_dict(data)
