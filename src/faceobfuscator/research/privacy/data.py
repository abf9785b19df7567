"""The attacker's faces and the victims.

The attacker trains on aligned faces of training identities (:mod:`faceobfuscator.research.data.split`:
people in no test pair). Victims are people of the test folds' same-person pairs (LFW
``pairs.txt``; CFP frontal-frontal): the pair's first photo is the one whose features
leak, the second is the reference that identity matching compares against. The two sets
share no person, and :func:`check_disjoint` proves it by name key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceobfuscator.errors import InputError
from faceobfuscator.research.data.datasets import (
    identity_names,
    list_images,
    name_key,
    prepared_path,
    read_manifest,
)
from faceobfuscator.research.data.split import Split, benchmark_pairs

__all__ = [
    "Victim",
    "attacker_entries",
    "attacker_keys",
    "check_disjoint",
    "load_faces",
    "victim_pairs",
    "victims",
]


@dataclass(frozen=True)
class Victim:
    """One victim: dataset, identity folder, name key, attacked and reference photos (aligned
    PNG paths)."""

    dataset: str
    identity: str
    key: str
    probe: Path
    reference: Path


def _aligned(aligned_dir: Path, dataset: str) -> dict[str, Path]:
    """source relpath -> aligned PNG for every written entry of a prepared dataset."""
    folder = aligned_dir / dataset
    manifest = read_manifest(folder)
    if not manifest:
        raise InputError(
            f"no prepared {dataset} faces under {folder}; run `faceobf data prepare {dataset}`"
        )
    return {
        src: prepared_path(folder, src)
        for src, e in manifest.items()
        if e.outcome != "failed" and e.output is not None
    }


def attacker_keys(split: Split) -> set[str]:
    """Name keys of every training identity: the people an attacker may train on."""
    return {name_key(n) for names in split.names.values() for n in names.values()}


def attacker_entries(
    split: Split, aligned_dir: str | Path, datasets_root: str | Path
) -> list[tuple[str, Path]]:
    """``(name key, aligned PNG)`` for every prepared face of a training identity (LFW, and
    the frontal photos of CFP), sorted."""
    out = []
    for dataset in ("lfw", "cfp"):
        train = set(split.train.get(dataset, ()))
        if not train:
            continue
        names = identity_names(dataset, datasets_root)
        try:
            aligned = _aligned(Path(aligned_dir), dataset)
        except InputError:
            continue  # a dataset not prepared yet just gives the attacker fewer faces
        for identity, rel in list_images(dataset, datasets_root):
            if identity in train and rel in aligned and "/profile/" not in rel:
                out.append((name_key(names[identity]), aligned[rel]))
    if not out:
        raise InputError(f"no prepared faces of training identities under {aligned_dir}")
    return sorted(out, key=lambda t: str(t[1]))


def victim_pairs(
    dataset: str, split: Split, datasets_root: str | Path
) -> list[tuple[str, str, str, str]]:
    """Every candidate victim of ``dataset`` (``"lfw"``, or ``"cfp"`` frontal-frontal) as
    ``(identity, name key, probe relpath, reference relpath)``: the same-person pairs of the
    test folds, in file order (one person may appear in several)."""
    bench = {"lfw": "lfw", "cfp": "cfp-ff"}.get(dataset)
    if bench is None:
        raise InputError(f"unknown victim dataset {dataset!r}; known: ['lfw', 'cfp']")
    names = identity_names(dataset, datasets_root)
    folds = set(split.test_folds)
    out = []
    for pair in benchmark_pairs(bench, datasets_root):
        if pair.same and pair.fold in folds:
            identity = pair.path_a.split("/", 1)[0]
            out.append((identity, name_key(names[identity]), pair.path_a, pair.path_b))
    return out


def victims(
    dataset: str,
    split: Split,
    aligned_dir: str | Path,
    datasets_root: str | Path,
    *,
    count: int,
    rng: np.random.Generator,
) -> list[Victim]:
    """Up to ``count`` victims, one per person, drawn at random from
    :func:`victim_pairs` whose two photos are both prepared."""
    aligned = _aligned(Path(aligned_dir), dataset)
    people: dict[str, Victim] = {}
    for identity, key, probe, reference in victim_pairs(dataset, split, datasets_root):
        if identity not in people and probe in aligned and reference in aligned:
            people[identity] = Victim(dataset, identity, key, aligned[probe], aligned[reference])
    chosen = sorted(people)
    if len(chosen) > count:
        chosen = sorted(rng.choice(chosen, size=count, replace=False).tolist())
    return [people[c] for c in chosen]


def check_disjoint(attacker_keys: set[str], victim_list: list[Victim], split: Split) -> None:
    """Raise unless no victim is an attacker identity and every victim is a test person."""
    shared = sorted({v.key for v in victim_list} & attacker_keys)
    if shared:
        raise InputError(f"{len(shared)} victims are also attacker identities, e.g. {shared[:3]}")
    test = set(split.test_keys)
    outside = sorted(v.key for v in victim_list if v.key not in test)
    if outside:
        raise InputError(f"{len(outside)} victims are not test identities, e.g. {outside[:3]}")


def load_faces(paths: list[Path]) -> np.ndarray:
    """Aligned PNGs -> uint8 ``(N, S, S, 3)``."""
    from faceobfuscator.client.images import load_image

    if not paths:
        raise InputError("no faces to load")
    faces = [load_image(p) for p in paths]
    shapes = {f.shape for f in faces}
    if len(shapes) != 1:
        raise InputError(f"aligned faces differ in shape: {sorted(shapes)}")
    return np.stack(faces)
