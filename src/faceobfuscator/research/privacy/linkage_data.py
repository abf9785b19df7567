"""The faces of a linkage evaluation: the attacker's public faces, the victims and the
gallery of real photos they are searched in.

- Attacker: FairFace crops (people photographed on Flickr, in no benchmark) and LFW/CFP
  training identities (people in no test pair, :mod:`faceobfuscator.research.data.split`).
  CelebA is left out: its celebrities may be LFW or CFP test people, and its crops carry
  no names to check that against.
- Victims: LFW and CFP test-fold people, one same-person pair each
  (:func:`~faceobfuscator.research.privacy.data.victims`): the first photo's payload leaks,
  the second is in the gallery.
- Gallery: the victims' second photos, padded with one photo each of other test-fold
  people (never a victim, never an attacker identity) to ``gallery_identities`` identities.

:func:`check_linkage_disjoint` raises unless attacker, victims and distractors are
disjoint by name key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceobfuscator.errors import InputError
from faceobfuscator.research.data.datasets import (
    identity_names,
    name_key,
    prepared_path,
    read_manifest,
)
from faceobfuscator.research.data.split import Split, benchmark_pairs, compute_split, read_split
from faceobfuscator.research.privacy.data import (
    Victim,
    attacker_entries,
    attacker_keys,
    check_disjoint,
    load_faces,
    victims,
)
from faceobfuscator.research.privacy.linkage_config import LinkageConfig

__all__ = ["LinkageFaces", "check_linkage_disjoint", "fairface_paths", "select_linkage_faces"]

Log = Callable[[str], None]


@dataclass
class LinkageFaces:
    """Everything a linkage run compares (uint8 faces ``(N, S, S, 3)``).

    Attributes:
        attacker: the attacker's training faces.
        attacker_keys: name keys of the attacker's LFW/CFP identities (FairFace has none).
        attacker_sources: faces per source (``fairface``, ``lfw/cfp training``).
        probe: each victim's leaked photo; ``victim_keys``/``victim_datasets`` per victim.
        gallery: real photos; ``gallery_keys``/``gallery_datasets`` per photo. The victims'
            second photos are the first ``len(probe)`` rows, in victim order.
        split_digest: the split's digest, for the report.
    """

    attacker: np.ndarray
    attacker_keys: frozenset[str]
    attacker_sources: dict[str, int]
    probe: np.ndarray
    victim_keys: list[str]
    victim_datasets: list[str]
    gallery: np.ndarray
    gallery_keys: list[str]
    gallery_datasets: list[str]
    split_digest: str

    def digest(self) -> str:
        """SHA-256 (hex) over the attacker, probe and gallery pixels and the victims' and
        gallery's keys: two runs with the same digest compared the same faces."""
        h = hashlib.sha256()
        for a in (self.attacker, self.probe, self.gallery):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update("\n".join(self.victim_keys + self.gallery_keys).encode())
        return h.hexdigest()


def fairface_paths(aligned_dir: str | Path) -> list[Path]:
    """Aligned FairFace training crops (``<aligned_dir>/fairface``), sorted; none if the
    dataset is not prepared."""
    folder = Path(aligned_dir) / "fairface"
    manifest = read_manifest(folder) if folder.is_dir() else {}
    return sorted(
        prepared_path(folder, src)
        for src, e in manifest.items()
        if e.outcome != "failed" and e.output is not None and src.startswith("train/")
    )


def _test_people(dataset: str, split: Split, aligned_dir: Path, root: str | Path) -> dict:
    """name key -> one prepared photo of each test-fold person of ``dataset``."""
    names = identity_names(dataset, root)
    folder = aligned_dir / dataset
    aligned = {
        src: prepared_path(folder, src)
        for src, e in read_manifest(folder).items()
        if e.outcome != "failed" and e.output is not None
    }
    folds = set(split.test_folds)
    out: dict[str, Path] = {}
    for pair in benchmark_pairs({"lfw": "lfw", "cfp": "cfp-ff"}[dataset], root):
        if pair.fold not in folds:
            continue
        for rel in sorted((pair.path_a, pair.path_b)):
            key = name_key(names[rel.split("/", 1)[0]])
            if key not in out and rel in aligned:
                out[key] = aligned[rel]
    return out


def check_linkage_disjoint(
    attacker: set[str] | frozenset[str],
    victim_list: list[Victim],
    distractor_keys: list[str],
    split: Split,
) -> None:
    """Raise :class:`InputError` unless no victim is an attacker identity, every victim is
    a test person, and no distractor is a victim or an attacker identity."""
    check_disjoint(set(attacker), victim_list, split)
    victim_keys = {v.key for v in victim_list}
    bad = sorted(set(distractor_keys) & (victim_keys | set(attacker)))
    if bad:
        raise InputError(f"{len(bad)} distractors are victims or attacker identities: {bad[:3]}")


def select_linkage_faces(cfg: LinkageConfig, log: Log = print) -> LinkageFaces:
    """Draw the attacker's faces, the victims and the gallery (see the module docstring)."""
    split = read_split(cfg.split) if cfg.split else compute_split(cfg.datasets_root)
    rng = np.random.default_rng(cfg.seed)
    entries = attacker_entries(split, cfg.aligned_dir, cfg.datasets_root)
    fair = fairface_paths(cfg.aligned_dir)
    n_fair = min(len(fair), cfg.attacker_images // 2)
    n_train = min(len(entries), cfg.attacker_images - n_fair)
    pick_f = sorted(rng.choice(len(fair), n_fair, replace=False)) if n_fair else []
    pick_t = sorted(rng.choice(len(entries), n_train, replace=False))
    pool = attacker_keys(split) | {k for k, _ in entries}
    attacker = load_faces([fair[i] for i in pick_f] + [entries[i][1] for i in pick_t])
    drawn = frozenset(entries[i][0] for i in pick_t)
    log(
        f"attacker: {n_fair} FairFace faces, {n_train} faces of {len(drawn)} LFW/CFP training people"
    )

    chosen: list[Victim] = []
    vrng = np.random.default_rng(cfg.seed + 1)
    for dataset in ("lfw", "cfp"):
        found = victims(
            dataset,
            split,
            cfg.aligned_dir,
            cfg.datasets_root,
            count=cfg.victims_per_dataset,
            rng=vrng,
        )
        seen = {v.key for v in chosen}
        chosen += [v for v in found if v.key not in seen]  # a person in both: once
    victim_keys = {v.key for v in chosen}
    distractors: dict[str, tuple[str, Path]] = {}
    for dataset in ("lfw", "cfp"):
        people = _test_people(dataset, split, Path(cfg.aligned_dir), cfg.datasets_root)
        for key, path in people.items():
            if key not in victim_keys and key not in distractors:
                distractors[key] = (dataset, path)
    need = cfg.gallery_identities - len(chosen)
    if need > len(distractors):
        raise InputError(
            f"gallery_identities={cfg.gallery_identities}, but the test folds hold only "
            f"{len(distractors) + len(chosen)} prepared identities"
        )
    keys = sorted(distractors)
    picked = sorted(rng.choice(len(keys), need, replace=False)) if need > 0 else []
    d_keys = [keys[i] for i in picked]
    check_linkage_disjoint(pool, chosen, d_keys, split)
    log(
        f"victims: {len(chosen)} test-fold people; gallery: {len(chosen) + len(d_keys)} "
        "identities; attacker, victims and distractors disjoint"
    )
    return LinkageFaces(
        attacker=attacker,
        attacker_keys=drawn,
        attacker_sources={"fairface": n_fair, "lfw/cfp training": n_train},
        probe=load_faces([v.probe for v in chosen]),
        victim_keys=[v.key for v in chosen],
        victim_datasets=[v.dataset for v in chosen],
        gallery=load_faces([v.reference for v in chosen] + [distractors[k][1] for k in d_keys]),
        gallery_keys=[v.key for v in chosen] + d_keys,
        gallery_datasets=[v.dataset for v in chosen] + [distractors[k][0] for k in d_keys],
        split_digest=split.digest,
    )
