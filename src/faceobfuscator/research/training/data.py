"""Training faces: in memory (pack file, aligned folders, synthetic) or streamed (RecordIO),
the held-out validation images, and the pack file format.

A pack (``faceobf data pack``) is an ``.npz`` read with ``allow_pickle=False``:
``jpeg`` (uint8, every image's JPEG bytes end to end), ``offsets`` (int64, N+1),
``labels`` (int64, N; -1 for an unlabelled image), ``classes`` (str, one name key per
label), ``sources`` (str, ``dataset/relpath`` of each image), ``meta`` (a JSON string)
and, for distillation, ``teacher_<name>`` (float32 ``(N, D)``, the teacher's normalised
embedding of each image, computed once when the pack is made; ``meta["teachers"]`` gives
each teacher's fingerprint).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import DEFAULT_IMAGE_SIZE
from faceobfuscator.research.training.config import DataConfig, ValidationConfig

__all__ = [
    "PACK_FORMAT",
    "FaceSet",
    "StreamedFaces",
    "write_pack",
    "read_pack",
    "load_aligned",
    "synthetic_faces",
    "load_training_data",
    "holdout",
    "file_sha256",
]

PACK_FORMAT = "faceobfuscator-pack/1"
_SIZE = DEFAULT_IMAGE_SIZE


@dataclass
class FaceSet:
    """Faces held in memory: uint8 ``(N, S, S, 3)`` and int64 labels ``(N,)`` (-1:
    unlabelled), on one device; ``classes[label]`` names each class; ``info`` describes
    the source; ``targets[teacher]`` holds a teacher's embeddings ``(N, D)`` float32."""

    faces: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    info: dict[str, Any]
    targets: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> FaceSet:
        targets = {k: v.to(device) for k, v in self.targets.items()}
        return FaceSet(
            self.faces.to(device), self.labels.to(device), self.classes, self.info, targets
        )

    def batches(self, index_batches: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, ...]]:
        for idx in index_batches:
            i = torch.as_tensor(idx, device=self.labels.device)
            yield self.faces[i], self.labels[i]


class _RecordDataset(torch.utils.data.Dataset):
    def __init__(self, reader: Any, keys: np.ndarray) -> None:
        self.reader, self.keys = reader, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor:
        from faceobfuscator.research.data.formats import decode_image

        _, image = self.reader.read_image(int(self.keys[i]))
        return torch.from_numpy(decode_image(image, _SIZE))


class StreamedFaces:
    """Faces decoded on the fly by DataLoader workers (RecordIO datasets too large to hold
    in memory). Same :meth:`batches` interface as :class:`FaceSet`, yielding CPU tensors."""

    def __init__(self, rec_path: str, workers: int) -> None:
        from faceobfuscator.research.data.formats import RecordIOReader

        self.reader = RecordIOReader(rec_path)
        keys, labels = self.reader.image_keys_and_labels()
        self.keys = keys
        self.labels = torch.from_numpy(labels)
        n_classes = int(labels.max()) + 1
        self.classes = [str(c) for c in range(n_classes)]
        self.workers = workers
        self.info = {"recordio": rec_path, "images": len(keys), "classes": n_classes}

    def __len__(self) -> int:
        return len(self.keys)

    def batches(self, index_batches: Sequence[np.ndarray]) -> Iterator[tuple[torch.Tensor, ...]]:
        loader = torch.utils.data.DataLoader(
            _RecordDataset(self.reader, self.keys),
            batch_sampler=[list(map(int, b)) for b in index_batches],
            num_workers=self.workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
        for faces, idx in zip(loader, index_batches, strict=True):
            yield faces, self.labels[torch.as_tensor(idx)]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _training_images(aligned_root: Path, split: Any, min_images: int) -> dict[str, list[Path]]:
    """Name key -> aligned PNGs of that training person (datasets merged by name)."""
    from faceobfuscator.research.data.datasets import name_key, prepared_path, read_manifest

    by_person: dict[str, list[Path]] = defaultdict(list)
    for dataset, identities in sorted(split.train.items()):
        allowed = set(identities)
        manifest = read_manifest(aligned_root / dataset)
        if not manifest:
            raise InputError(f"no aligned {dataset} crops at {aligned_root / dataset}")
        for source, entry in sorted(manifest.items()):
            if entry.outcome != "failed" and entry.identity in allowed:
                person = name_key(split.names[dataset][entry.identity])
                by_person[person].append(prepared_path(aligned_root / dataset, source))
    return {k: v for k, v in sorted(by_person.items()) if len(v) >= min_images}


def _extra_images(folder: Path, labelled: bool, name: str) -> list[tuple[str, Path]]:
    """``(class name or "", aligned PNG)`` of every aligned image of a prepared folder."""
    from faceobfuscator.research.data.datasets import prepared_path, read_manifest

    manifest = read_manifest(folder)
    if not manifest:
        raise InputError(f"no aligned crops at {folder}; run `faceobf data prepare` first")
    return [
        (f"{name}:{entry.identity}" if labelled else "", prepared_path(folder, source))
        for source, entry in sorted(manifest.items())
        if entry.outcome != "failed"
    ]


def _read_pngs(paths: Sequence[Path], progress: bool) -> np.ndarray:
    """Aligned crops through the project's one decoder (as :func:`load_aligned` reads them)."""
    from tqdm import tqdm

    from faceobfuscator.research.data.formats import decode_image

    faces = np.empty((len(paths), _SIZE, _SIZE, 3), np.uint8)
    for i, path in enumerate(tqdm(paths, desc="reading crops", disable=not progress)):
        faces[i] = decode_image(path.read_bytes(), _SIZE)
    return faces


def test_person_faces(
    aligned_root: str | Path, split: Any, *, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned crops ``(M, S, S, 3)`` of every LFW and CFP person of a test pair (by name
    key, :attr:`Split.test_keys`), from the prepared folders under ``aligned_root``, and
    each crop's person (``dataset:identity``, ``(M,)`` str)."""
    from faceobfuscator.research.data.datasets import name_key, prepared_path, read_manifest

    test = set(split.test_keys)
    paths, people = [], []
    for dataset in ("lfw", "cfp"):
        folder = Path(aligned_root) / dataset
        names = split.names.get(dataset, {})
        for source, entry in sorted(read_manifest(folder).items()):
            if entry.outcome == "failed" or entry.identity in names:
                continue
            if dataset == "lfw" and name_key(entry.identity) not in test:
                continue
            paths.append(prepared_path(folder, source))
            people.append(f"{dataset}:{entry.identity}")
    if not paths:
        raise InputError(f"no aligned LFW/CFP test-person crops under {aligned_root}")
    return _read_pngs(paths, progress), np.asarray(people)


def person_templates(embeddings: np.ndarray, people: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(templates, person index of each embedding)``: one normalised mean embedding
    ``(P, D)`` per person."""
    names, inverse = np.unique(people, return_inverse=True)
    templates = np.zeros((len(names), embeddings.shape[1]), np.float64)
    np.add.at(templates, inverse, embeddings)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True).clip(1e-12)
    return templates.astype(np.float32), inverse


def near_test_rule(
    embeddings: np.ndarray,
    people: np.ndarray,
    *,
    far: float = 1e-4,
    sample: int = 3000,
    seed: int = 0,
) -> dict[str, float]:
    """The teacher's threshold that keeps test people out of unlabelled data.

    Each test person gets a template (:func:`person_templates`); the threshold is the
    cosine at false-match rate ``far`` over the non-mated comparisons of up to ``sample``
    test images with the other people's templates. An unlabelled image whose best cosine to
    any template reaches it is dropped, whoever it shows. ``far`` is per comparison: at the
    teacher's verification threshold (FAR 1e-3) every image meets some 2,500 templates, so
    most innocent faces would be dropped; 1e-4 keeps the mated match rate high (reported
    as ``mated_match_rate``: test images whose own template reaches the threshold).

    Raises:
        InputError: fewer than two test people.
    """
    templates, inverse = person_templates(embeddings, people)
    if len(templates) < 2:
        raise InputError("the near-test rule needs embeddings of at least two test people")
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(embeddings), min(sample, len(embeddings)), replace=False)
    scores = embeddings[idx] @ templates.T
    mated = np.zeros(scores.shape, bool)
    mated[np.arange(len(idx)), inverse[idx]] = True
    threshold = float(np.quantile(scores[~mated], 1 - far))
    return {
        "threshold": threshold,
        "far": far,
        "mated_match_rate": float(np.mean(scores[mated] >= threshold)),
        "non_mated_comparisons": int((~mated).sum()),
        "test_people": len(templates),
        "test_images": len(embeddings),
    }


def write_pack(
    out: str | Path,
    *,
    aligned_root: str | Path,
    split_path: str | Path,
    quality: int = 90,
    min_images: int = 2,
    labelled_extra: Mapping[str, str | Path] | None = None,
    extra: Mapping[str, str | Path] | None = None,
    teachers: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Pack the training images into one ``.npz`` of JPEG bytes. Returns a summary.

    Args:
        aligned_root, split_path: every training image of LFW/CFP people (by the split)
            with at least ``min_images`` aligned images, labelled by person.
        labelled_extra: ``name -> prepared folder`` whose identity folders label the images
            (e.g. AT&T), every image kept.
        extra: ``name -> prepared folder`` of unlabelled faces (label -1). With
            ``teachers``, an image within the first teacher's threshold
            (:func:`near_test_rule`) of any LFW/CFP test person's template is dropped.
        teachers: names of teachers whose embeddings of every kept image are stored
            (``teacher_<name>``), computed once and cached under ``cache_dir``.

    Raises:
        InputError: no images, or a prepared folder is missing.
    """
    from faceobfuscator.research.data.packs import encode_jpeg, join_jpegs
    from faceobfuscator.research.data.split import read_split
    from faceobfuscator.research.training.teachers import get_teacher, teacher_embeddings

    split = read_split(split_path)
    people = _training_images(Path(aligned_root), split, min_images)
    classes = list(people)
    items: list[tuple[int, Path, str]] = []
    for label, paths in enumerate(people.values()):
        items += [(label, path, "") for path in paths]
    for name, folder in (labelled_extra or {}).items():
        for cls, path in _extra_images(Path(folder), True, name):
            if cls not in classes:
                classes.append(cls)
            items.append((classes.index(cls), path, name))
    n_labelled = len(items)
    for name, folder in (extra or {}).items():
        items += [(-1, path, name) for _, path in _extra_images(Path(folder), False, name)]
    if not items:
        raise InputError(f"no training images under {aligned_root} for split {split_path}")
    faces = _read_pngs([path for _, path, _ in items], progress)
    models = {t: get_teacher(t) for t in teachers}
    embeddings = {
        t: teacher_embeddings(faces, m, cache_dir=cache_dir, progress=progress)
        for t, m in models.items()
    }
    keep = np.ones(len(items), bool)
    dropped: dict[str, int] = {}
    rule: dict[str, Any] = {}
    if teachers and n_labelled < len(items):
        test_faces, test_people = test_person_faces(aligned_root, split, progress=progress)
        test = teacher_embeddings(
            test_faces, models[teachers[0]], cache_dir=cache_dir, progress=progress
        )
        rule = {"teacher": teachers[0], **near_test_rule(test, test_people)}
        templates, _ = person_templates(test, test_people)
        emb = embeddings[teachers[0]]
        for i in range(n_labelled, len(items), 4096):
            best = (emb[i : i + 4096] @ templates.T).max(axis=1)
            keep[i : i + 4096] = best < rule["threshold"]
        for (_, _, name), k in zip(items[n_labelled:], keep[n_labelled:], strict=True):
            dropped[name] = dropped.get(name, 0) + int(not k)
    kept = np.flatnonzero(keep)
    from PIL import Image

    chunks = [encode_jpeg(Image.fromarray(faces[i]), quality=quality) for i in kept]
    data, offsets = join_jpegs(chunks)
    root = Path(aligned_root)
    sources = [
        path.relative_to(root).as_posix() if not name else f"{name}/{path.name}"
        for _, path, name in (items[i] for i in kept)
    ]
    labels = np.asarray([items[i][0] for i in kept], dtype=np.int64)
    meta = {
        "format": PACK_FORMAT,
        "quality": quality,
        "min_images": min_images,
        "split": str(split_path),
        "split_sha256": file_sha256(split_path),
        "images": int(len(kept)),
        "labelled_images": int((labels >= 0).sum()),
        "classes": len(classes),
        "extra": {k: str(v) for k, v in (extra or {}).items()},
        "labelled_extra": {k: str(v) for k, v in (labelled_extra or {}).items()},
        "teachers": {t: m.fingerprint() for t, m in models.items()},
        "dropped_near_test_person": dropped,
        "near_test_rule": rule,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"teacher_{t}": e[kept] for t, e in embeddings.items()}
    with open(out, "wb") as f:  # np.savez would append .npz to a name without it
        np.savez(
            f,
            jpeg=data,
            offsets=offsets,
            labels=labels,
            classes=np.asarray(classes),
            sources=np.asarray(sources),
            meta=np.asarray(json.dumps(meta)),
            **arrays,  # type: ignore[arg-type]
        )
    return {**meta, "bytes": out.stat().st_size, "path": str(out)}


def read_pack(path: str | Path) -> FaceSet:
    """Decode a pack into a CPU :class:`FaceSet`."""
    from faceobfuscator.research.data.packs import decode_jpegs

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"pack {p} not found; make it with `faceobf data pack`")
    try:
        with np.load(p, allow_pickle=False) as z:
            jpeg, offsets, labels = z["jpeg"], z["offsets"], z["labels"]
            classes, meta = [str(c) for c in z["classes"]], json.loads(str(z["meta"]))
            targets = {
                k.removeprefix("teacher_"): torch.from_numpy(z[k].astype(np.float32))
                for k in z.files
                if k.startswith("teacher_")
            }
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{p} is not a pack file: {exc}") from None
    if meta.get("format") != PACK_FORMAT or len(offsets) != len(labels) + 1:
        raise ConfigError(f"{p}: not a {PACK_FORMAT} file or its index is damaged")
    if any(t.shape[0] != len(labels) for t in targets.values()):
        raise ConfigError(f"{p}: a teacher array does not have one row per image")
    faces = decode_jpegs(jpeg, offsets, size=_SIZE)
    info = {**meta, "pack": str(p), "pack_sha256": file_sha256(p)}
    return FaceSet(torch.from_numpy(faces), torch.from_numpy(labels), classes, info, targets)


def load_aligned(aligned_root: str | Path, split_path: str | Path, min_images: int) -> FaceSet:
    """The training people's aligned PNGs (lossless) as a CPU :class:`FaceSet`."""
    from faceobfuscator.research.data.formats import decode_image
    from faceobfuscator.research.data.split import read_split

    people = _training_images(Path(aligned_root), read_split(split_path), min_images)
    faces, labels = [], []
    for label, paths in enumerate(people.values()):
        for path in paths:
            faces.append(decode_image(path.read_bytes(), _SIZE))
            labels.append(label)
    info = {
        "aligned": str(aligned_root),
        "split": str(split_path),
        "split_sha256": file_sha256(split_path),
        "images": len(labels),
        "classes": len(people),
    }
    return FaceSet(torch.from_numpy(np.stack(faces)), torch.tensor(labels), list(people), info)


def synthetic_faces(identities: int, images: int, *, device: torch.device, seed: int) -> FaceSet:
    """Random uint8 faces with random labels, made on ``device``: for timing only."""
    g = torch.Generator(device=device).manual_seed(seed)
    faces = torch.randint(
        0, 256, (images, _SIZE, _SIZE, 3), generator=g, dtype=torch.uint8, device=device
    )
    labels = torch.randint(0, identities, (images,), generator=g, device=device)
    info = {"synthetic": True, "images": images, "classes": identities}
    return FaceSet(faces, labels, [str(i) for i in range(identities)], info)


def load_training_data(
    config: DataConfig, *, device: torch.device, seed: int, on_device: bool = True
) -> FaceSet | StreamedFaces:
    """The configured source; in-memory faces move to ``device`` when ``on_device``."""
    kind = config.kind()
    if kind == "recordio":
        return StreamedFaces(str(config.recordio), config.workers)
    if kind == "synthetic":
        assert config.synthetic is not None  # kind() checked it
        syn = config.synthetic
        return synthetic_faces(syn.identities, syn.images, device=device, seed=seed)
    if kind == "pack":
        data = read_pack(str(config.pack))
    else:
        data = load_aligned(str(config.aligned), str(config.split), config.min_images)
    return data.to(device) if on_device else data


def holdout(
    labels: np.ndarray, config: ValidationConfig, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` image indices: ``per_identity`` images of up to
    ``max_identities`` people with at least ``min_images`` images are held out (seeded)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] >= 0]  # unlabelled images (-1) are never held out
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    eligible = np.flatnonzero(counts >= max(config.min_images, config.per_identity + 1))
    chosen = rng.permutation(eligible)[: config.max_identities]
    val = [
        rng.choice(order[starts[c] : starts[c] + counts[c]], config.per_identity, replace=False)
        for c in np.sort(chosen)
    ]
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(labels.size), val_idx)
    return train_idx, val_idx
