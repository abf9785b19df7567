"""The faces of one evaluation: the attacker's training faces and the victims' photos,
chosen from the prepared datasets and the split, or read from a pack.

A pack is a folder holding the same faces for a machine without the datasets (a GPU
machine): ``attacker.npz`` (JPEG quality 95 bytes: the attacker's training faces need not
be lossless, and so a few thousand fit a small transfer), ``victims.npz`` (lossless) and
``pack.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import ConfigError
from faceobfuscator.research.data.packs import decode_jpegs, encode_jpeg, join_jpegs
from faceobfuscator.research.data.split import compute_split, read_split
from faceobfuscator.research.privacy.config import PrivacyConfig
from faceobfuscator.research.privacy.data import (
    attacker_entries,
    attacker_keys,
    check_disjoint,
    load_faces,
    victims,
)

__all__ = ["EvaluationFaces", "VictimFaces", "select_faces", "write_pack", "read_pack"]

PACK_FORMAT = "faceobfuscator-privacy-pack/1"


@dataclass
class VictimFaces:
    """Victims of one benchmark: attacked photos, reference photos (uint8 ``(N, S, S, 3)``)
    and identity folders."""

    dataset: str
    probe: np.ndarray
    reference: np.ndarray
    identities: list[str]


@dataclass
class EvaluationFaces:
    """The attacker's faces (uint8 ``(N, S, S, 3)``), the victims, and provenance."""

    attacker: np.ndarray
    attacker_identities: int
    victims: list[VictimFaces]
    split_digest: str


def select_faces(cfg: PrivacyConfig, log: Any = print) -> EvaluationFaces:
    """Draw the attacker's faces and the victims from the prepared datasets, checking that
    no victim is a person the attacker could have trained on."""
    split = read_split(cfg.split) if cfg.split else compute_split(cfg.datasets_root)
    entries = attacker_entries(split, cfg.aligned_dir, cfg.datasets_root)
    pool = attacker_keys(split) | {k for k, _ in entries}
    rng = np.random.default_rng(cfg.seed)
    pick = sorted(
        rng.choice(len(entries), size=min(cfg.attacker_images, len(entries)), replace=False)
    )
    attacker = load_faces([entries[i][1] for i in pick])
    drawn = len({entries[i][0] for i in pick})
    log(f"attacker: {len(attacker)} faces of {drawn} training identities")
    vrng = np.random.default_rng(cfg.seed + 1)
    sets = []
    for dataset in cfg.victim_datasets:
        chosen = victims(
            dataset,
            split,
            cfg.aligned_dir,
            cfg.datasets_root,
            count=cfg.victims_per_dataset,
            rng=vrng,
        )
        check_disjoint(pool, chosen, split)
        log(f"victims {dataset}: {len(chosen)} people, disjoint from the attacker's")
        sets.append(
            VictimFaces(
                dataset,
                load_faces([v.probe for v in chosen]),
                load_faces([v.reference for v in chosen]),
                [v.identity for v in chosen],
            )
        )
    return EvaluationFaces(attacker, drawn, sets, split.digest)


def write_pack(faces: EvaluationFaces, folder: str | Path) -> Path:
    """Write ``faces`` to a pack folder."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    data, offsets = join_jpegs([encode_jpeg(f, quality=95) for f in faces.attacker])
    np.savez(out / "attacker.npz", jpeg=data, lengths=np.diff(offsets))
    arrays: dict[str, np.ndarray] = {}
    for v in faces.victims:
        arrays[f"{v.dataset}_probe"] = v.probe
        arrays[f"{v.dataset}_reference"] = v.reference
    np.savez_compressed(out / "victims.npz", **arrays)  # type: ignore[arg-type]
    meta = {
        "format": PACK_FORMAT,
        "attacker_images": len(faces.attacker),
        "attacker_identities": faces.attacker_identities,
        "split_digest": faces.split_digest,
        "victims": {v.dataset: v.identities for v in faces.victims},
    }
    (out / "pack.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def read_pack(folder: str | Path) -> EvaluationFaces:
    """Read a pack folder written by :func:`write_pack`."""
    src = Path(folder)
    meta_path = src / "pack.json"
    if not meta_path.is_file():
        raise ConfigError(
            f"{src} is not a privacy pack (no pack.json); make one with `faceobf privacy pack`"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != PACK_FORMAT:
        raise ConfigError(f"{meta_path}: format {meta.get('format')!r}, expected {PACK_FORMAT!r}")
    with np.load(src / "attacker.npz", allow_pickle=False) as z:
        data, lengths = z["jpeg"], z["lengths"]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    attacker = decode_jpegs(data, offsets)
    sets = []
    with np.load(src / "victims.npz", allow_pickle=False) as z:
        for dataset, identities in meta["victims"].items():
            sets.append(
                VictimFaces(
                    dataset, z[f"{dataset}_probe"], z[f"{dataset}_reference"], list(identities)
                )
            )
    return EvaluationFaces(
        attacker, int(meta["attacker_identities"]), sets, str(meta["split_digest"])
    )
