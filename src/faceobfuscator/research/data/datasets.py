"""Readers for the face datasets (LFW, CFP, AT&T), their verification protocols, and the
manifests of prepared (aligned) datasets. Pure Python: no dlib, no torch.

Every image is named by its *relpath*: the POSIX path relative to the dataset's image
folder (:func:`image_root`), e.g. ``"Abel_Pacheco/Abel_Pacheco_0001.jpg"`` (LFW),
``"001/frontal/01.jpg"`` (CFP), ``"s1/1.pgm"`` (AT&T). Its first component is the identity
folder. The aligned copy of an image lives at :func:`prepared_path`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import InputError

__all__ = [
    "DATASETS",
    "MANIFEST_NAME",
    "OUTCOMES",
    "SUMMARY_NAME",
    "ManifestEntry",
    "Pair",
    "cfp_pairs",
    "identity_names",
    "image_root",
    "lfw_pairs",
    "list_folder_images",
    "list_images",
    "mean_landmarks",
    "name_key",
    "normalise_name",
    "prepared_path",
    "read_manifest",
]

DATASETS = ("lfw", "cfp", "att")
#: Outcome of preparing one image: aligned from detected landmarks, aligned with the fixed
#: centre box of a pre-centred dataset, or not written.
OUTCOMES = ("detected", "centre", "failed")
MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"

_IMAGE_DIRS = {"lfw": ("lfw",), "cfp": ("cfp", "Data", "Images"), "att": ("att_faces",)}
_IMAGE_GLOBS = {"lfw": "*/*.jpg", "cfp": "*/*/*.jpg", "att": "s*/*.pgm"}
_CFP_PROTOCOLS = {"FF": ("F", "F"), "FP": ("F", "P")}


@dataclass(frozen=True)
class Pair:
    """One verification pair; paths are relpaths in the dataset's image folder."""

    path_a: str
    path_b: str
    same: bool
    fold: int


@dataclass(frozen=True)
class ManifestEntry:
    """One line of a prepared dataset's manifest.

    Attributes:
        identity: identity folder of the source image.
        source: relpath of the source image in the dataset's image folder.
        outcome: one of :data:`OUTCOMES`.
        output: relpath of the aligned PNG in the prepared folder; None when failed.
        landmarks: the five (x, y) source-image points warped onto the template (detected,
            or the fixed centre points); None when failed.
        detector: detection stage that found the face (e.g. ``"hog"``, ``"hog-up2"``,
            ``"cnn"``); None otherwise.
        reason: why the image failed (or why detection failed before a centre crop).
    """

    identity: str
    source: str
    outcome: str
    output: str | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None
    detector: str | None = None
    reason: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestEntry:
        if data.get("outcome") not in OUTCOMES:
            raise ValueError(f"outcome {data.get('outcome')!r} is not one of {list(OUTCOMES)}")
        marks = data.get("landmarks")
        return cls(
            identity=str(data["identity"]),
            source=str(data["source"]),
            outcome=data["outcome"],
            output=data.get("output"),
            landmarks=None if marks is None else tuple((float(x), float(y)) for x, y in marks),
            detector=data.get("detector"),
            reason=data.get("reason"),
        )


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; known: {list(DATASETS)}")
    return name


def image_root(name: str, root: str | Path) -> Path:
    """The image folder of dataset ``name`` under the datasets ``root`` (the folder holding
    ``lfw/``, ``cfp/``, ``att_faces/``)."""
    folder = Path(root).joinpath(*_IMAGE_DIRS[_check_name(name)])
    if not folder.is_dir():
        raise InputError(
            f"{name} images not found at {folder}; pass the datasets folder that holds "
            f"{_IMAGE_DIRS[name][0]}/ (e.g. --root ../shared/datasets)"
        )
    return folder


def list_images(name: str, root: str | Path) -> list[tuple[str, str]]:
    """Every image of a dataset as sorted ``(identity, relpath)`` pairs."""
    folder = image_root(name, root)
    rels = sorted(p.relative_to(folder).as_posix() for p in folder.glob(_IMAGE_GLOBS[name]))
    if not rels:
        raise InputError(f"no {name} images matching {_IMAGE_GLOBS[name]} under {folder}")
    return [(rel.split("/", 1)[0], rel) for rel in rels]


#: Suffixes (lower case) of the photos :func:`list_folder_images` collects.
FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png")


def list_folder_images(folder: str | Path) -> list[tuple[str, str]]:
    """Every ``.jpg``/``.jpeg``/``.png`` photo under ``folder`` (recursively, any case of
    the suffix) as sorted ``(identity, relpath)`` pairs; the identity is the first path
    component, or ``""`` for a photo directly in ``folder``.

    Raises :class:`InputError` if the folder does not exist, holds no photo, or holds two
    photos whose aligned copies would share one path (``a.jpg`` and ``a.png``).
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist or is not a folder")
    rels = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in FOLDER_SUFFIXES and p.is_file()
    )
    if not rels:
        raise InputError(f"no {'/'.join(FOLDER_SUFFIXES)} photos under {root}")
    seen: dict[Path, str] = {}
    for rel in rels:
        target = prepared_path("", rel)
        if target in seen:
            raise InputError(
                f"{seen[target]} and {rel} in {root} would both be aligned to {target}; "
                "rename one of them"
            )
        seen[target] = rel
    return [(rel.split("/", 1)[0] if "/" in rel else "", rel) for rel in rels]


def prepared_path(out_dir: str | Path, source: str) -> Path:
    """Where the aligned PNG of the image ``source`` (a relpath) lives in ``out_dir``."""
    return Path(out_dir) / Path(source).with_suffix(".png")


def normalise_name(name: str) -> str:
    """A person's name in one spelling across datasets: accents dropped, lower case,
    apostrophes removed, every other run of non-alphanumerics one ``_``
    (``"Amar'e Stoudemire"`` and ``"Amare_Stoudemire"`` -> ``"amare_stoudemire"``)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = ascii_name.lower().replace("'", "")
    return re.sub(r"[^a-z0-9]+", "_", ascii_name).strip("_")


def name_key(name: str) -> str:
    """Order-insensitive comparison key of a name: its normalised tokens sorted, so that
    ``"Ziyi Zhang"`` (CFP) meets ``"Zhang_Ziyi"`` (LFW). Use it to find people shared
    between datasets."""
    return "_".join(sorted(normalise_name(name).split("_")))


def identity_names(name: str, root: str | Path) -> dict[str, str]:
    """Identity folder -> normalised person name. LFW folders are names; CFP folders
    ``001``.. index the lines of ``cfp/Data/list_name.txt``; AT&T subjects are anonymous
    and named ``att_s1``.."""
    folders = sorted({identity for identity, _ in list_images(name, root)})
    if name == "lfw":
        return {f: normalise_name(f) for f in folders}
    if name == "att":
        return {f: f"att_{f}" for f in folders}
    list_file = Path(root) / "cfp" / "Data" / "list_name.txt"
    names = [line.strip() for line in _read_lines(list_file)]
    out = {}
    for f in folders:
        if not f.isdigit() or not 1 <= int(f) <= len(names) or not names[int(f) - 1]:
            raise InputError(f"CFP identity folder {f!r} has no name in line {f} of {list_file}")
        out[f] = normalise_name(names[int(f) - 1])
    return out


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"protocol file {path} not found; check the datasets folder")
    return path.read_text(encoding="utf-8").splitlines()


def lfw_pairs(meta_dir: str | Path, *, filename: str = "pairs.txt") -> list[Pair]:
    """Parse an LFW pairs file (``pairs.txt``: View 2, ten folds).

    With a header line ``"<folds> <n>"`` the file holds, per fold, n same-person lines
    ``name i j`` then n different-person lines ``name1 i name2 j``; folds are numbered from
    1. Without a header (View 1 files) every pair gets fold 0.
    """
    path = Path(meta_dir) / filename
    lines = _read_lines(path)
    header = lines[0].split() if lines else []
    n_folds, per_fold = 1, 0
    start = 0
    if len(header) == 2 and all(h.isdigit() for h in header):
        n_folds, per_fold, start = int(header[0]), int(header[1]), 1
    pairs: list[Pair] = []
    for number, line in enumerate(lines[start:], start=start + 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) == 3:
                a, b, same = (fields[0], int(fields[1])), (fields[0], int(fields[2])), True
            elif len(fields) == 4:
                a, b, same = (fields[0], int(fields[1])), (fields[2], int(fields[3])), False
            else:
                raise ValueError(f"expected 3 or 4 fields, got {len(fields)}")
        except ValueError as exc:
            raise InputError(f"{path}, line {number}: malformed pair {line!r} ({exc})") from None
        fold = (len(pairs) // (2 * per_fold) + 1) if per_fold else 0
        pairs.append(Pair(_lfw_rel(*a), _lfw_rel(*b), same, fold))
    if per_fold:
        _check_folds(path, pairs, n_folds, per_fold)
    return pairs


def _lfw_rel(name: str, index: int) -> str:
    return f"{name}/{name}_{index:04d}.jpg"


def _check_folds(path: Path, pairs: list[Pair], n_folds: int, per_fold: int) -> None:
    if len(pairs) != 2 * n_folds * per_fold:
        raise InputError(
            f"{path}: header promises {n_folds} folds of 2x{per_fold} pairs, "
            f"found {len(pairs)} pairs"
        )
    for i, pair in enumerate(pairs):
        if pair.same != (i % (2 * per_fold) < per_fold):
            raise InputError(
                f"{path}, line {i + 2}: a {'same' if pair.same else 'different'}-person pair "
                f"where fold {pair.fold} expects the other kind"
            )


def cfp_pairs(cfp_dir: str | Path, protocol: str) -> list[Pair]:
    """Parse a CFP protocol, ``"FF"`` (frontal-frontal) or ``"FP"`` (frontal-profile):
    ``Protocol/Split/<protocol>/01..10/{same,diff}.txt`` lines ``i,j`` index
    ``Protocol/Pair_list_F.txt`` (first image) and ``Pair_list_{F,P}.txt`` (second)."""
    if protocol not in _CFP_PROTOCOLS:
        raise InputError(f"unknown CFP protocol {protocol!r}; known: {list(_CFP_PROTOCOLS)}")
    protocol_dir = Path(cfp_dir) / "Protocol"
    first, second = (_cfp_list(protocol_dir, kind) for kind in _CFP_PROTOCOLS[protocol])
    split_dir = protocol_dir / "Split" / protocol
    folds = sorted(p for p in split_dir.glob("[0-9][0-9]") if p.is_dir())
    if not folds:
        raise InputError(f"no fold folders 01..10 under {split_dir}")
    pairs: list[Pair] = []
    for fold_dir in folds:
        for kind, same in (("same", True), ("diff", False)):
            path = fold_dir / f"{kind}.txt"
            for number, line in enumerate(_read_lines(path), start=1):
                if not line.strip():
                    continue
                try:
                    i, j = (int(v) for v in line.split(","))
                    pair = Pair(first[i], second[j], same, int(fold_dir.name))
                except (ValueError, KeyError) as exc:
                    raise InputError(
                        f"{path}, line {number}: malformed pair {line!r}; expected 'i,j' "
                        f"indexing the pair lists ({type(exc).__name__}: {exc})"
                    ) from None
                pairs.append(pair)
    return pairs


def _cfp_list(protocol_dir: Path, kind: str) -> dict[int, str]:
    """Index -> relpath in ``cfp/Data/Images`` of one ``Pair_list_{F,P}.txt``."""
    path = protocol_dir / f"Pair_list_{kind}.txt"
    images = (protocol_dir.parent / "Data" / "Images").resolve()
    out = {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            index, target = int(fields[0]), (protocol_dir / fields[1]).resolve()
            out[index] = target.relative_to(images).as_posix()
        except (ValueError, IndexError) as exc:
            raise InputError(
                f"{path}, line {number}: malformed entry {line!r}; expected "
                f"'<index> ../Data/Images/<id>/<pose>/<n>.jpg' ({exc})"
            ) from None
    return out


def read_manifest(out_dir: str | Path) -> dict[str, ManifestEntry]:
    """A prepared folder's manifest as ``source relpath -> entry`` (the last line about a
    source wins). Empty if there is no manifest yet. An unfinished last line (a run killed
    while writing) is ignored; any other bad line raises :class:`InputError`."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    entries: dict[str, ManifestEntry] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = ManifestEntry.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines):  # no newline after it: the write was cut short
                break
            raise InputError(f"{path}, line {number}: bad manifest entry ({exc})") from None
        entries[entry.source] = entry
    return entries


def mean_landmarks(entries: Iterable[ManifestEntry]) -> np.ndarray:
    """Mean ``(5, 2)`` of the landmarks of the detected entries; this is how
    :data:`faceobfuscator.client.alignment.CENTRE_LANDMARKS` was made."""
    points = [e.landmarks for e in entries if e.outcome == "detected" and e.landmarks]
    if not points:
        raise InputError("no detected entries with landmarks to average")
    return np.asarray(points, dtype=np.float64).mean(axis=0)
