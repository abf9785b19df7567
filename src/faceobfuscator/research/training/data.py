"""Training faces: in memory (pack file, aligned folders, synthetic) or streamed (RecordIO),
the held-out validation images, and the pack file format.

A pack (``faceobf data pack``) is an ``.npz`` read with ``allow_pickle=False``:
``jpeg`` (uint8, every image's JPEG bytes end to end), ``offsets`` (int64, N+1),
``labels`` (int64, N), ``classes`` (str, one name key per label), ``sources``
(str, ``dataset/relpath`` of each image) and ``meta`` (a JSON string).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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
    """Faces held in memory: uint8 ``(N, S, S, 3)`` and int64 labels ``(N,)``, on one
    device; ``classes[label]`` names each class; ``info`` describes the source."""

    faces: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    info: dict[str, Any]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device) -> FaceSet:
        return FaceSet(self.faces.to(device), self.labels.to(device), self.classes, self.info)

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


def write_pack(
    out: str | Path,
    *,
    aligned_root: str | Path,
    split_path: str | Path,
    quality: int = 90,
    min_images: int = 2,
) -> dict[str, Any]:
    """Pack every training image of people with at least ``min_images`` aligned images into
    one ``.npz`` of JPEG bytes. Returns a summary."""
    from PIL import Image

    from faceobfuscator.research.data.packs import encode_jpeg, join_jpegs
    from faceobfuscator.research.data.split import read_split

    split = read_split(split_path)
    people = _training_images(Path(aligned_root), split, min_images)
    chunks, labels, sources = [], [], []
    root = Path(aligned_root)
    for label, (_, paths) in enumerate(people.items()):
        for path in paths:
            with Image.open(path) as im:
                chunks.append(encode_jpeg(im, quality=quality))
            labels.append(label)
            sources.append(path.relative_to(root).as_posix())
    if not chunks:
        raise InputError(f"no training images under {aligned_root} for split {split_path}")
    data, offsets = join_jpegs(chunks)
    meta = {
        "format": PACK_FORMAT,
        "quality": quality,
        "min_images": min_images,
        "split": str(split_path),
        "split_sha256": file_sha256(split_path),
        "images": len(labels),
        "classes": len(people),
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # np.savez would append .npz to a name without it
        np.savez(
            f,
            jpeg=data,
            offsets=offsets,
            labels=np.asarray(labels, dtype=np.int64),
            classes=np.asarray(list(people)),
            sources=np.asarray(sources),
            meta=np.asarray(json.dumps(meta)),
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
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{p} is not a pack file: {exc}") from None
    if meta.get("format") != PACK_FORMAT or len(offsets) != len(labels) + 1:
        raise ConfigError(f"{p}: not a {PACK_FORMAT} file or its index is damaged")
    faces = decode_jpegs(jpeg, offsets, size=_SIZE)
    info = {**meta, "pack": str(p), "pack_sha256": file_sha256(p)}
    return FaceSet(torch.from_numpy(faces), torch.from_numpy(labels), classes, info)


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
