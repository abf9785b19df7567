"""The identity split between training and the verification benchmarks.

Test pairs: LFW ``pairs.txt`` and CFP FF and FP, folds 6-10 by default. Training
identities: every LFW and CFP identity whose person appears in none of those pairs; people
are matched across datasets by :func:`faceobfuscator.research.data.datasets.name_key` (normalised,
order-insensitive), so the 172 people in both datasets are handled. The split is a JSON
file written by :func:`write_split` and read back by :func:`read_split`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from faceobfuscator.errors import ConfigError
from faceobfuscator.research.data.datasets import (
    Pair,
    cfp_pairs,
    identity_names,
    lfw_pairs,
    name_key,
)
from faceobfuscator.research.data.paths import TEST_FOLDS

__all__ = [
    "SPLIT_FORMAT",
    "Split",
    "compute_split",
    "benchmark_pairs",
    "write_split",
    "read_split",
    "parse_folds",
]

SPLIT_FORMAT = "faceobfuscator-split/1"
_DATASETS = ("lfw", "cfp")


@dataclass(frozen=True)
class Split:
    """Training identity folders per dataset and the names (keys) held out for testing.

    Attributes:
        test_folds: the benchmark folds reserved for testing.
        train: dataset -> sorted identity folders available for training.
        test_keys: sorted name keys of every person in a test pair.
        names: dataset -> {identity folder: normalised name} for the training identities.
    """

    test_folds: tuple[int, ...]
    train: dict[str, tuple[str, ...]]
    test_keys: tuple[str, ...]
    names: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "format": SPLIT_FORMAT,
            "test_folds": list(self.test_folds),
            "rule": "training identities: LFW and CFP people whose name key appears in no "
            "test pair (LFW pairs.txt, CFP FF and FP) of the test folds",
            "counts": {d: len(v) for d, v in self.train.items()} | {"test": len(self.test_keys)},
            "train": {d: list(v) for d, v in self.train.items()},
            "names": self.names,
            "test_keys": list(self.test_keys),
        }

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON, to tie packs and models to this split."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def parse_folds(text: str) -> tuple[int, ...]:
    """``"6-10"`` or ``"1,3,5"`` (or a mix) -> sorted fold numbers."""
    folds: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            folds.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ConfigError(f"folds {text!r}: expected e.g. '6-10' or '1,2,3'") from None
    if not folds or min(folds) < 1:
        raise ConfigError(f"folds {text!r}: expected fold numbers >= 1")
    return tuple(sorted(folds))


def benchmark_pairs(benchmark: str, datasets_root: str | Path) -> list[Pair]:
    """All pairs of ``"lfw"``, ``"cfp-ff"`` or ``"cfp-fp"`` (every fold)."""
    root = Path(datasets_root)
    if benchmark == "lfw":
        return lfw_pairs(root / "lfw_meta")
    if benchmark in ("cfp-ff", "cfp-fp"):
        return cfp_pairs(root / "cfp", benchmark[-2:].upper())
    raise ConfigError(f"unknown benchmark {benchmark!r}; known: ['lfw', 'cfp-ff', 'cfp-fp']")


def _identity(relpath: str) -> str:
    return relpath.split("/", 1)[0]


def _pair_keys(pairs: Iterable[Pair], names: dict[str, str], folds: set[int]) -> set[str]:
    keys = set()
    for p in pairs:
        if p.fold in folds:
            for rel in (p.path_a, p.path_b):
                keys.add(name_key(names.get(_identity(rel), _identity(rel))))
    return keys


def compute_split(datasets_root: str | Path, *, test_folds: Iterable[int] = TEST_FOLDS) -> Split:
    """Training identities disjoint, by person, from every test pair of ``test_folds``."""
    folds = set(test_folds)
    names = {d: identity_names(d, datasets_root) for d in _DATASETS}
    keys = _pair_keys(benchmark_pairs("lfw", datasets_root), names["lfw"], folds)
    for bench in ("cfp-ff", "cfp-fp"):
        keys |= _pair_keys(benchmark_pairs(bench, datasets_root), names["cfp"], folds)
    train = {
        d: tuple(sorted(f for f, n in names[d].items() if name_key(n) not in keys))
        for d in _DATASETS
    }
    train_names = {d: {f: names[d][f] for f in train[d]} for d in _DATASETS}
    return Split(tuple(sorted(folds)), train, tuple(sorted(keys)), train_names)


def write_split(split: Split, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(split.to_dict(), indent=1) + "\n")
    return out


def read_split(path: str | Path) -> Split:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"split file {p} not found; make it with `faceobf data split`")
    try:
        data = json.loads(p.read_text())
        if data.get("format") != SPLIT_FORMAT:
            raise ConfigError(f"{p}: format {data.get('format')!r}, expected {SPLIT_FORMAT!r}")
        return Split(
            tuple(data["test_folds"]),
            {d: tuple(v) for d, v in data["train"].items()},
            tuple(data["test_keys"]),
            {d: dict(v) for d, v in data.get("names", {}).items()},
        )
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{p} is not a split file: {exc}") from None
